#!/usr/bin/env bash
# The test command. Sets up what it needs (pinned Python packages, GoogleTest),
# builds the C++ library and its GoogleTest suites (the CUDA kernels are
# compiled for sm_90a whenever nvcc exists, so a kernel that stops compiling
# fails here), runs ctest, installs the Python package and runs pytest.
# GPU tests are collected everywhere and skip, counted, without a CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}

if [ ! -f /usr/include/gtest/gtest.h ] && command -v apt-get >/dev/null; then
  echo "== installing GoogleTest (libgtest-dev)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgtest-dev >/dev/null
fi
echo "== installing pinned Python requirements"
python3 -m pip install -q --disable-pip-version-check -r requirements/test.txt

CUTLASS_INCLUDE_DIR=$(python3 -c "import cutlass_library, os; print(os.path.join(os.path.dirname(cutlass_library.__file__), 'source', 'include'))")
echo "== building the C++ library and GoogleTest suites (build/test)"
mkdir -p build
cmake -S . -B build/test -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASH_KDA_BUILD_TESTS=ON \
  -DFLASH_KDA_CUDA="${FLASH_KDA_CUDA:-AUTO}" -DFLASH_KDA_CUDA_ARCHS="${FLASH_KDA_CUDA_ARCHS:-90a}" \
  -DCUTLASS_INCLUDE_DIR="$CUTLASS_INCLUDE_DIR" >build/cmake-configure.log 2>&1 || {
  cat build/cmake-configure.log; exit 1; }
cmake --build build/test -j"$JOBS"
echo "== C++ tests"
ctest --test-dir build/test --output-on-failure -j"$JOBS"

echo "== installing the Python package"
python3 -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps .
echo "== Python tests (tests/gpu skip without a CUDA device)"
python3 -m pytest -q -rs tests/python tests/gpu
