#!/usr/bin/env bash
# The one script run on the GPU machine per call, from the repository root:
#
#   bash bench/run_device.sh        # results in $OUT (default /tmp/flash_kda_out)
#
# 1. carried wheels (.whl/*.whl) -> /tmp/site, on PYTHONPATH
# 2. machine facts (nvidia-smi, nvcc, torch)
# 3. build + install flash_kda for the local GPU (pip, scikit-build-core,
#    sm_90a); C++ GoogleTest suites with ctest when GoogleTest is there
# 4. pytest tests/python tests/gpu (FLASH_KDA_RESULTS_DIR=$OUT -> accuracy.json)
# 5. compute-sanitizer memcheck + racecheck on bench/sanitize_case.py
# 6. bench/bench_fwd.py --json $OUT/bench.json (FlashKDA's gate), then --gate softplus
#    --json $OUT/bench_softplus.json (SOFTPLUS_BENCH_CASES); bench/bench_state_pool.py
#    --json $OUT/pool_bench.json; bench/bench_decode.py --json $OUT/decode_bench.json;
#    bench/bench_host_overhead.py --json $OUT/host_overhead.json
# 7. $OUT/results.md (printed last); every log and JSON also packed into $OUT/raw.tar.gz
#    (at most 8 files come back: results.md, raw.tar.gz and the main JSONs, or,
#    when the Triton cache comes back in parts, results.md, raw.tar.gz and the parts)
#
# Environment:
#   SKIP_BUILD=1 SKIP_TESTS=1 SKIP_SANITIZER=1 SKIP_BENCH=1   skip a step (SKIP_BENCH: the
#                    forward benchmark only)
#   SKIP_ALL_BENCH=1 skip every benchmark and build check after the sanitizer (forward,
#                    softplus, pool, decode, host overhead, wheel smoke, native build):
#                    a tests-and-sanitizer call, e.g. before bench/ab_bench.sh
#   SKIP_POOL_BENCH=1   skip the state-pool benchmark (bench_state_pool.py)
#   PYTEST_ARGS      replaces the default pytest options "-q -rfEs"
#   PYTEST_PATHS     replaces the default "tests/python tests/gpu"
#   PYTEST_BUDGET_S  most seconds pytest may take (default 420; less when later steps need the time)
#   BENCH_CASES      bench case filter (bench_fwd.py --cases), e.g. "H96 T8192,varlen6"
#   BENCH_ARGS       extra bench_fwd.py arguments, e.g. "--repeats 300 --no-fla"
#   SKIP_DECODE_BENCH=1   skip the decode benchmark (6b)
#   SKIP_NATIVE_BUILD=1   skip step 6f (pip install . with the default FLASH_KDA_CUDA_ARCHS=native)
#   DECODE_BENCH_BUDGET_S seconds reserved for it (default 150; taken from the fwd bench's share)
#   DECODE_BENCH_CASES    decode bench case filter (bench_decode.py --cases), e.g. "bw,N64 t1"
#   DECODE_BENCH_ARGS     extra bench_decode.py arguments, e.g. "--no-fla"
#   SANITIZER_TOOLS  default "memcheck racecheck" (add synccheck / initcheck)
#   FLASH_KDA_CUDA_ARCHS  default 90a
#   FLASH_KDA_CPP_TESTS   1 / 0 forces the C++ tests on / off (default: when gtest.h is found)
#   WARM_FLA=0|1     compile FLA's kernels in the background first (bench/warm_fla.py, step 1b;
#                    default: 1 unless a Triton cache was carried in)
#   WARM_FLA_JOBS    its worker processes (default 6); WARM_FLA_WAIT_S: most seconds step 6 waits for it
#   SOFTPLUS_BENCH_CASES  softplus bench cases (default "H96 T8192,H64 T8192,H96 varlen6")
#   RUN_BUDGET_S     seconds the whole script may take (default 540); later steps
#                    get what earlier ones left
set -uo pipefail

if [[ "${SKIP_ALL_BENCH:-0}" == 1 ]]; then
  export SKIP_BENCH=1 SKIP_SOFTPLUS_BENCH=1 SKIP_POOL_BENCH=1 SKIP_DECODE_BENCH=1 SKIP_HOST_BENCH=1 \
    SKIP_WHEEL_SMOKE=1 SKIP_NATIVE_BUILD=1
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
REPO=$PWD
OUT=${OUT:-/tmp/flash_kda_out}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/flash_kda_run.XXXXXX)
STEPS=$WORK/steps.tsv
: >"$STEPS"
BUDGET_S=${RUN_BUDGET_S:-540}
START=$SECONDS
ARCHS=${FLASH_KDA_CUDA_ARCHS:-90a}
NPROC=$(nproc 2>/dev/null || echo 8)
export PYTHONUNBUFFERED=1
export PYTHONDONTWRITEBYTECODE=1

section() { printf '\n======== [%4ds] %s ========\n' "$((SECONDS - START))" "$*"; }
# record NAME STATUS SECONDS NOTE   (STATUS: PASS FAIL SKIP)
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >>"$STEPS"; echo ">> $1: $2 (${3}s) ${4:-}"; }
# record_rc NAME RC START FILE: PASS, or FAIL "timed out" (rc 124: FILE holds the cases done) / "exit RC"
record_rc() {
  if [[ $2 == 0 ]]; then record "$1" PASS $((SECONDS - $3)) "$4"
  elif [[ $2 == 124 ]]; then record "$1" FAIL $((SECONDS - $3)) "timed out ($4 holds the cases done)"
  else record "$1" FAIL $((SECONDS - $3)) "exit $2"; fi
}
# smoke SITE LOG: bench/wheel_smoke.py against the flash_kda installed in SITE
# (first on PYTHONPATH, so that it shadows the source build); 0 if it passes
smoke() {
  (cd /tmp && PYTHONPATH=$1${PYTHONPATH:+:$PYTHONPATH} timeout "$(clamp 120 20)" \
    python3 "$REPO/bench/wheel_smoke.py") 2>&1 | tee -a "$2"
  [[ ${PIPESTATUS[0]} == 0 ]] && grep -q "wheel smoke: PASS" "$2"
}
remaining() { echo $((BUDGET_S - (SECONDS - START))); }
# clamp CAP RESERVE: min(CAP, remaining - RESERVE), at least 30
clamp() {
  local r=$(($(remaining) - $2))
  ((r > $1)) && r=$1
  ((r < 30)) && r=30
  echo "$r"
}

# ---------------------------------------------------------------------------------
section "1. carried wheels -> /tmp/site"
t=$SECONDS
if compgen -G ".whl/*.whl" >/dev/null; then
  ls -1 .whl/*.whl
  if python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl; then
    record wheels PASS $((SECONDS - t)) "$(ls .whl/*.whl | wc -l) wheels"
  else
    record wheels FAIL $((SECONDS - t)) "pip install --target /tmp/site failed"
  fi
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
else
  record wheels SKIP 0 "no .whl/ folder carried"
fi

# FLA's Triton kernels: compiled binaries and autotuning results are kept in
# one cache folder that comes back as $OUT/triton_cache.tar.xz.part*; carried in as
# .tcache/triton_cache.tar.xz.part* it spares the next fresh machine the ~70 s per
# new shape of compiling and autotuning.
export TRITON_CACHE_DIR=/tmp/triton_cache TRITON_CACHE_AUTOTUNING=1
mkdir -p "$TRITON_CACHE_DIR"
WARM_DEFAULT=1
if compgen -G ".tcache/triton_cache.tar.xz.part*" >/dev/null; then
  cat .tcache/triton_cache.tar.xz.part* | tar xJ -C "$TRITON_CACHE_DIR" &&
    echo "Triton cache: $(du -sh "$TRITON_CACHE_DIR" | cut -f1) carried in" && WARM_DEFAULT=0
fi

# FLA's kernels for the benchmark's shapes, compiled in the background by
# worker processes while the build and the tests run (WARM_FLA=0 turns it
# off; WARM_FLA_JOBS workers). They keep no autotuning results: the
# benchmark autotunes on an idle GPU from compiled kernels. Step 6 waits for them.
WARM_PID=
# Whether pytest will run tests/gpu/test_gpu_fla.py (its shapes are worth
# warming only then: in session 7 the warm-up compiled them for an --ignore'd
# file and step 6 waited 207 s for it, leaving the benchmark 20 s).
fla_tests_will_run() {
  [[ "${SKIP_TESTS:-0}" != 1 ]] || return 1
  [[ " ${PYTEST_ARGS:-} " != *"test_gpu_fla.py"* ]] || return 1
  local paths=" ${PYTEST_PATHS:-tests/python tests/gpu} "
  [[ "$paths" == *" tests/gpu "* || "$paths" == *" tests/gpu/ "* || "$paths" == *"test_gpu_fla.py"* ]]
}
if [[ "${WARM_FLA:-$WARM_DEFAULT}" == 1 && "${SKIP_TESTS:-0}${SKIP_BENCH:-0}${SKIP_SOFTPLUS_BENCH:-0}${SKIP_DECODE_BENCH:-0}" != 1111 ]] &&
  python3 -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('fla') is None)" 2>/dev/null; then
  section "1b. FLA warm-up (background)"
  SOFTPLUS_BENCH_CASES=${SOFTPLUS_BENCH_CASES:-H96 T8192,H64 T8192,H96 varlen6}
  none_if() { [[ "$1" == 1 ]] && echo none || echo "$2"; }
  # (niced: beside them pytest ran ~2x slower in session 6 and twice ran out of its share)
  nice -n 15 python3 bench/warm_fla.py --jobs "${WARM_FLA_JOBS:-6}" \
    --lower-bound-cases "$(none_if "${SKIP_BENCH:-0}" "${BENCH_CASES:-}")" \
    --softplus-cases "$(none_if "${SKIP_SOFTPLUS_BENCH:-0}" "$SOFTPLUS_BENCH_CASES")" \
    --decode-cases "$(none_if "${SKIP_DECODE_BENCH:-0}" "${DECODE_BENCH_CASES:-}")" \
    $(fla_tests_will_run && echo --tests) >"$OUT/warm_fla.log" 2>&1 &
  WARM_PID=$!
  echo "warm_fla.py started (pid $WARM_PID), log: warm_fla.log"
fi

# ---------------------------------------------------------------------------------
section "2. machine"
nvidia-smi || true
nvcc --version || true
python3 - <<'EOF' || true
import sys
print("python", sys.version.split()[0], sys.executable)
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        print("gpu", torch.cuda.get_device_name(0), f"cc {p.major}.{p.minor}", p.multi_processor_count, "SMs",
              f"{p.total_memory / 2**30:.0f} GiB")
except Exception as e:
    print("torch:", e)
for m in ("triton", "nanobind", "scikit_build_core", "cupy", "fla", "einops", "packaging", "pathspec"):
    try:
        mod = __import__(m)
        print(m, getattr(mod, "__version__", "?"), getattr(mod, "__file__", ""))
    except Exception as e:
        print(m, "MISSING", type(e).__name__, e)
EOF

# ---------------------------------------------------------------------------------
section "3. build + install flash_kda (FLASH_KDA_CUDA=ON, archs $ARCHS)"
BUILD_OK=0
BUILD_DIR=build/gpu
if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
  record build SKIP 0 "SKIP_BUILD=1 (using the installed flash_kda)"
  BUILD_OK=1
else
  t=$SECONDS
  CUTLASS_INC=$(python3 -c "import importlib.util, os; s = importlib.util.find_spec('cutlass_library'); print(os.path.join(os.path.dirname(s.origin), 'source', 'include') if s else '')" 2>/dev/null)
  CPP_TESTS=${FLASH_KDA_CPP_TESTS:-}
  if [[ -z "$CPP_TESTS" ]]; then
    CPP_TESTS=0
    for f in /usr/include/gtest/gtest.h /usr/local/include/gtest/gtest.h; do [[ -f $f ]] && CPP_TESTS=1; done
    [[ -n "${GTEST_ROOT:-}${GTest_ROOT:-}" ]] && CPP_TESTS=1
  fi
  echo "CUTLASS headers: ${CUTLASS_INC:-not found (cmake will look itself)}; C++ tests: $CPP_TESTS"
  build() {  # build TESTS(0/1)
    local cfg=("--config-settings=build-dir=$BUILD_DIR"
      "--config-settings=cmake.define.FLASH_KDA_CUDA=ON"
      "--config-settings=cmake.define.FLASH_KDA_CUDA_ARCHS=$ARCHS")
    [[ -n "$CUTLASS_INC" && -f "$CUTLASS_INC/cute/tensor.hpp" ]] &&
      cfg+=("--config-settings=cmake.define.CUTLASS_INCLUDE_DIR=$CUTLASS_INC")
    if [[ $1 == 1 ]]; then cfg+=(--config-settings=cmake.define.FLASH_KDA_BUILD_TESTS=ON)
    else cfg+=(--config-settings=cmake.define.FLASH_KDA_BUILD_TESTS=OFF); fi
    echo "pip install --no-build-isolation --no-deps -v ${cfg[*]} ." | tee -a "$OUT/build.log"
    FLASH_KDA_CUDA=ON FLASH_KDA_CUDA_ARCHS=$ARCHS CMAKE_BUILD_PARALLEL_LEVEL=$NPROC \
      timeout "$(clamp 420 120)" python3 -m pip install --no-build-isolation --no-deps -v "${cfg[@]}" . \
      >>"$OUT/build.log" 2>&1
  }
  : >"$OUT/build.log"
  if build "$CPP_TESTS"; then
    BUILD_OK=1
  elif [[ "$CPP_TESTS" == 1 ]]; then
    echo "build with the C++ tests failed; tail:"
    tail -n 30 "$OUT/build.log"
    echo "retrying without the C++ tests"
    CPP_TESTS=0
    build 0 && BUILD_OK=1
  fi
  if [[ $BUILD_OK == 1 ]]; then
    record build PASS $((SECONDS - t)) "log: build.log"
  else
    echo "---- build failed; last 80 lines of build.log ----"
    tail -n 80 "$OUT/build.log"
    record build FAIL $((SECONDS - t)) "see build.log"
  fi
  grep -E "warning" "$OUT/build.log" | grep -v -E "^\s*$" | sort | uniq -c | sort -rn | head -n 10 || true
fi
(cd /tmp && python3 -c "import flash_kda, sys; print('flash_kda', flash_kda.__file__); print(flash_kda.build_info()); print('cuda_available', flash_kda.cuda_available())") || true

# C++ tests (ctest in the same build tree)
if [[ "${SKIP_BUILD:-0}" != 1 && $BUILD_OK == 1 && "${CPP_TESTS:-0}" == 1 ]]; then
  section "3b. C++ tests (ctest)"
  t=$SECONDS
  if timeout "$(clamp 180 240)" ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$NPROC" --timeout 120 \
    >"$OUT/cpp.log" 2>&1; then
    record cpp_tests PASS $((SECONDS - t)) "$(grep -E 'tests passed' "$OUT/cpp.log" | tail -n 1)"
  else
    tail -n 40 "$OUT/cpp.log"
    record cpp_tests FAIL $((SECONDS - t)) "$(grep -E 'tests passed|No tests were found' "$OUT/cpp.log" | tail -n 1)"
  fi
  tail -n 3 "$OUT/cpp.log"
else
  echo "C++ tests skipped: GoogleTest (gtest/gtest.h) not found on this machine, or no build" | tee "$OUT/cpp.log"
  record cpp_tests SKIP 0 "GoogleTest not available here (or build skipped/failed)"
fi

# ---------------------------------------------------------------------------------
section "4. pytest"
if [[ "${SKIP_TESTS:-0}" == 1 ]]; then
  record pytest SKIP 0 "SKIP_TESTS=1"
else
  t=$SECONDS
  # shellcheck disable=SC2086
  # Keep time for the later steps that will run (nominal shares), not more:
  # a run that skips them gives pytest the rest (FLA's tests compile Triton
  # kernels, ~70 s per shape on a fresh machine without a carried cache).
  reserve=0
  [[ "${SKIP_SANITIZER:-0}" != 1 ]] && reserve=$((reserve + 120))
  [[ "${SKIP_BENCH:-0}" != 1 ]] && reserve=$((reserve + 120))
  [[ "${SKIP_SOFTPLUS_BENCH:-0}" != 1 ]] && reserve=$((reserve + 60))
  [[ "${SKIP_POOL_BENCH:-0}" != 1 ]] && reserve=$((reserve + 25))
  [[ "${SKIP_DECODE_BENCH:-0}" != 1 ]] && reserve=$((reserve + ${DECODE_BENCH_BUDGET_S:-45}))
  [[ "${SKIP_NATIVE_BUILD:-0}" != 1 ]] && reserve=$((reserve + 60))
  ((reserve > 150)) && reserve=150
  COLUMNS=200 FLASH_KDA_RESULTS_DIR=$OUT FLASH_KDA_REQUIRE_CUDA=1 timeout "$(clamp "${PYTEST_BUDGET_S:-420}" "$reserve")" \
    python3 -m pytest ${PYTEST_PATHS:-tests/python tests/gpu} ${PYTEST_ARGS:--q -rfEs} -p no:cacheprovider \
    2>&1 | tee "$OUT/pytest.log"
  rc=${PIPESTATUS[0]}
  summary=$(grep -E '[0-9]+ (passed|failed|error|errors|skipped)' "$OUT/pytest.log" | tail -n 1)
  if [[ $rc == 0 ]]; then record pytest PASS $((SECONDS - t)) "$summary"
  elif [[ $rc == 124 ]]; then record pytest FAIL $((SECONDS - t)) "timed out; $summary"
  else record pytest FAIL $((SECONDS - t)) "exit $rc; $summary"; fi
fi

# ---------------------------------------------------------------------------------
section "5. compute-sanitizer"
: >"$OUT/sanitizer.log"
if [[ "${SKIP_SANITIZER:-0}" == 1 ]]; then
  record sanitizer SKIP 0 "SKIP_SANITIZER=1"
elif ! command -v compute-sanitizer >/dev/null; then
  record sanitizer SKIP 0 "compute-sanitizer not on PATH"
else
  for tool in ${SANITIZER_TOOLS:-memcheck racecheck}; do
    t=$SECONDS
    echo "=== compute-sanitizer --tool $tool ===" | tee -a "$OUT/sanitizer.log"
    timeout "$(clamp 150 120)" compute-sanitizer --tool "$tool" --error-exitcode 1 --print-limit 50 \
      python3 bench/sanitize_case.py 2>&1 | tee -a "$OUT/sanitizer.log"
    rc=${PIPESTATUS[0]}
    verdict=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$OUT/sanitizer.log" | tail -n 1)
    echo "=== end $tool: exit $rc ===" >>"$OUT/sanitizer.log"
    if [[ $rc == 0 ]]; then record "sanitizer_$tool" PASS $((SECONDS - t)) "$verdict"
    elif [[ $rc == 124 ]]; then record "sanitizer_$tool" FAIL $((SECONDS - t)) "timed out"
    else record "sanitizer_$tool" FAIL $((SECONDS - t)) "exit $rc; $verdict"; fi
  done
fi

# ---------------------------------------------------------------------------------
section "6. benchmark"
if [[ -n "$WARM_PID" ]]; then
  t=$SECONDS
  w=$(clamp "${WARM_FLA_WAIT_S:-240}" 200)
  echo "waiting up to ${w}s for the FLA warm-up"
  for ((i = 0; i < w; i++)); do kill -0 "$WARM_PID" 2>/dev/null || break; sleep 1; done
  if kill -0 "$WARM_PID" 2>/dev/null; then
    pkill -P "$WARM_PID" 2>/dev/null; kill "$WARM_PID" 2>/dev/null
    record warm_fla FAIL $((SECONDS - t)) "stopped after waiting ${w}s (see warm_fla.log)"
  else
    wait "$WARM_PID"; rc=$?
    if [[ $rc == 0 ]]; then record warm_fla PASS $((SECONDS - t)) "$(tail -n 1 "$OUT/warm_fla.log")"
    else record warm_fla FAIL $((SECONDS - t)) "exit $rc; $(tail -n 1 "$OUT/warm_fla.log")"; fi
  fi
  grep -E "^warm_fla:" "$OUT/warm_fla.log" | tail -n 60
fi
if [[ "${SKIP_BENCH:-0}" == 1 ]]; then
  record bench SKIP 0 "SKIP_BENCH=1"
else
  t=$SECONDS
  rem=$(remaining)
  budget=$((rem - 120))
  [[ "${SKIP_DECODE_BENCH:-0}" != 1 ]] && budget=$((budget - ${DECODE_BENCH_BUDGET_S:-150}))
  ((budget < 20)) && budget=20
  echo "time left ${rem}s: bench starts no new case after ${budget}s"
  # shellcheck disable=SC2086
  timeout "$(clamp 600 25)" python3 bench/bench_fwd.py --json "$OUT/bench.json" --time-budget "$budget" \
    ${BENCH_CASES:+--cases "$BENCH_CASES"} ${BENCH_ARGS:-} 2>&1 | tee "$WORK/bench.log"
  rc=${PIPESTATUS[0]}
  record_rc bench "$rc" "$t" bench.json
fi

section "6a. benchmark with the softplus gate (issue #8)"
if [[ "${SKIP_SOFTPLUS_BENCH:-0}" == 1 ]]; then
  record softplus_bench SKIP 0 "SKIP_SOFTPLUS_BENCH=1"
else
  t=$SECONDS
  sbudget=$(clamp "${SOFTPLUS_BENCH_BUDGET_S:-200}" 60)
  # shellcheck disable=SC2086
  timeout "$sbudget" python3 bench/bench_fwd.py --gate softplus --json "$OUT/bench_softplus.json" \
    --time-budget "$((sbudget - 60))" --cases "${SOFTPLUS_BENCH_CASES:-H96 T8192,H64 T8192,H96 varlen6}" \
    ${BENCH_ARGS:-} 2>&1 | tee -a "$WORK/bench.log"
  rc=${PIPESTATUS[0]}
  record_rc softplus_bench "$rc" "$t" bench_softplus.json
fi

section "6b. state-pool benchmark"
if [[ "${SKIP_POOL_BENCH:-0}" == 1 ]]; then
  record pool_bench SKIP 0 "SKIP_POOL_BENCH=1"
else
  t=$SECONDS
  timeout "$(clamp 300 25)" python3 bench/bench_state_pool.py --json "$OUT/pool_bench.json" 2>&1 | tee -a "$WORK/bench.log"
  rc=${PIPESTATUS[0]}
  record_rc pool_bench "$rc" "$t" pool_bench.json
fi

# ---------------------------------------------------------------------------------
section "6c. decode benchmark"
if [[ "${SKIP_DECODE_BENCH:-0}" == 1 ]]; then
  record decode_bench SKIP 0 "SKIP_DECODE_BENCH=1"
else
  t=$SECONDS
  dbudget=$(clamp "${DECODE_BENCH_BUDGET_S:-150}" 45)
  echo "decode bench: starts no new case after $((dbudget - 30))s"
  # shellcheck disable=SC2086
  timeout "$dbudget" python3 bench/bench_decode.py --json "$OUT/decode_bench.json" \
    --time-budget "$((dbudget - 30))" ${DECODE_BENCH_CASES:+--cases "$DECODE_BENCH_CASES"} \
    ${DECODE_BENCH_ARGS:-} 2>&1 | tee "$WORK/decode_bench.log"
  rc=${PIPESTATUS[0]}
  record_rc decode_bench "$rc" "$t" decode_bench.json
fi

section "6d. host overhead of an eager call (issue #5)"
if [[ "${SKIP_HOST_BENCH:-0}" == 1 ]]; then
  record host_overhead SKIP 0 "SKIP_HOST_BENCH=1"
else
  t=$SECONDS
  timeout "$(clamp 90 20)" python3 bench/bench_host_overhead.py --json "$OUT/host_overhead.json" 2>&1 | tee -a "$WORK/bench.log"
  rc=${PIPESTATUS[0]}
  record_rc host_overhead "$rc" "$t" host_overhead.json
fi

section "6e. a wheel built elsewhere (.dist/*.whl, issue #5)"
if compgen -G ".dist/flash_kda-*.whl" >/dev/null && [[ "${SKIP_WHEEL_SMOKE:-0}" != 1 ]]; then
  t=$SECONDS
  : >"$OUT/wheel_smoke.log"
  rm -rf /tmp/wheelsite
  if python3 -m pip install -q --no-index --no-deps --target /tmp/wheelsite .dist/flash_kda-*.whl &&
    smoke /tmp/wheelsite "$OUT/wheel_smoke.log"; then
    record wheel_smoke PASS $((SECONDS - t)) "$(ls .dist/*.whl | xargs -n1 basename)"
  else record wheel_smoke FAIL $((SECONDS - t)) "see wheel_smoke.log"; fi
else
  record wheel_smoke SKIP 0 "no .dist/flash_kda-*.whl carried (or SKIP_WHEEL_SMOKE=1)"
fi

section "6f. pip install . with the default architectures (native)"
# The README's default build: no FLASH_KDA_CUDA_ARCHS, so cmake/cuda_archs.cmake
# asks the local GPU (Hopper 90 -> 90a). Installed into its own folder and
# checked with the wheel smoke test (fwd with both gates, decode, vs oracle).
if [[ "${SKIP_NATIVE_BUILD:-0}" != 1 && $BUILD_OK == 1 ]]; then
  t=$SECONDS
  rm -rf /tmp/nativesite /tmp/nativebuild
  if (env -u FLASH_KDA_CUDA_ARCHS FLASH_KDA_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=$NPROC \
      timeout "$(clamp 240 60)" python3 -m pip install -q --no-build-isolation --no-deps \
      --config-settings=build-dir=/tmp/nativebuild --target /tmp/nativesite . >"$OUT/native_build.log" 2>&1); then
    if smoke /tmp/nativesite "$OUT/native_build.log"; then
      record native_build PASS $((SECONDS - t)) "$(grep -m1 'CUDA architectures' "$OUT/native_build.log")"
    else record native_build FAIL $((SECONDS - t)) "smoke test failed, see native_build.log"; fi
  else
    tail -n 30 "$OUT/native_build.log"
    record native_build FAIL $((SECONDS - t)) "pip install . failed, see native_build.log"
  fi
else
  record native_build SKIP 0 "SKIP_NATIVE_BUILD=1 or no build"
fi

# ---------------------------------------------------------------------------------
section "7. results"
for f in "$OUT"/*.log; do  # what comes back is at most 16 MiB a file
  [[ -f $f ]] || continue
  if (($(stat -c %s "$f") > 15000000)); then
    tail -c 15000000 "$f" >"$f.tmp" && mv "$f.tmp" "$f"
  fi
done
python3 bench/write_results.py --out "$OUT" --steps "$STEPS" --repo "$REPO" --elapsed $((SECONDS - START))
rc=$?
# At most 8 files come back: everything also goes into raw.tar.gz, and the
# secondary files leave $OUT (results.md, raw.tar.gz and the main JSONs stay, unless
# the Triton cache parts below need their places).
(cd "$OUT" && tar czf raw.tar.gz --exclude raw.tar.gz ./*.log ./*.json 2>/dev/null &&
  rm -f build.log cpp.log sanitizer.log pytest.log warm_fla.log pool_bench.json host_overhead.json wheel_smoke.log native_build.log) || true
# The Triton cache comes back in parts of < 15 MB (at most 6, 50 MB in all,
# so that it can be carried with the wheels); then the JSONs leave $OUT's top
# level (they are in raw.tar.gz) to stay within 8 files.
if [[ -n "$(ls -A "$TRITON_CACHE_DIR" 2>/dev/null)" && "${SKIP_TRITON_CACHE:-0}" != 1 ]]; then
  # xz: the cache is mostly IR text (gzip: 61 MB for 24 shapes, over the limit)
  if tar -I "xz -T0 -6" -cf "$WORK/triton_cache.tar.xz" -C "$TRITON_CACHE_DIR" . 2>/dev/null; then
    size=$(stat -c %s "$WORK/triton_cache.tar.xz")
    echo "Triton cache: $((size / 1000000)) MB compressed"
    if ((size < 50000000)); then
      rm -f "$OUT"/*.json
      split -b 15000000 -d -a 1 "$WORK/triton_cache.tar.xz" "$OUT/triton_cache.tar.xz.part"
    fi
  fi
fi
echo
cat "$OUT/results.md" 2>/dev/null || echo "results.md was not written"
rm -rf "$WORK"
exit $rc
