# Finds the CUTLASS/CuTe headers: CUTLASS_INCLUDE_DIR, else the pinned
# nvidia-cutlass wheel installed in the Python used for the build.
if(NOT CUTLASS_INCLUDE_DIR)
  find_package(Python3 COMPONENTS Interpreter QUIET)
  if(Python3_Interpreter_FOUND)
    execute_process(
      COMMAND ${Python3_EXECUTABLE} -c
        "import cutlass_library, os; print(os.path.join(os.path.dirname(cutlass_library.__file__), 'source', 'include'))"
      OUTPUT_VARIABLE _cutlass_dir RESULT_VARIABLE _rc ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(_rc EQUAL 0 AND EXISTS "${_cutlass_dir}/cute/tensor.hpp")
      set(CUTLASS_INCLUDE_DIR "${_cutlass_dir}" CACHE PATH "" FORCE)
    endif()
  endif()
endif()
if(NOT CUTLASS_INCLUDE_DIR OR NOT EXISTS "${CUTLASS_INCLUDE_DIR}/cute/tensor.hpp")
  message(FATAL_ERROR "CUTLASS headers not found: pip install nvidia-cutlass==4.2.0.0 "
                      "or pass -DCUTLASS_INCLUDE_DIR=<path to cutlass/include>")
endif()
message(STATUS "flash-kda: CUTLASS headers at ${CUTLASS_INCLUDE_DIR}")
