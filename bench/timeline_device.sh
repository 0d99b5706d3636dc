#!/usr/bin/env bash
# The timeline build and its probe in one step, on the GPU machine, after
# bench/run_device.sh has installed the carried wheels (it reuses /tmp/site):
#
#   bash bench/timeline_device.sh [probe_timeline.py arguments]
#
# Builds flash_kda with -DFLASH_KDA_TIMELINE=ON into /tmp/tl_site (wrong
# results by design: see src/cuda/sm90/timeline.cuh) and runs
# bench/probe_timeline.py against it; $OUT/timeline.json and the printout.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
OUT=${OUT:-/tmp/flash_kda_out}
mkdir -p "$OUT"
[[ -d /tmp/site ]] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
CUTLASS_INC=$(python3 -c "import importlib.util, os; s = importlib.util.find_spec('cutlass_library'); print(os.path.join(os.path.dirname(s.origin), 'source', 'include') if s else '')" 2>/dev/null)
cfg=(--config-settings=build-dir=/tmp/tl_build --config-settings=cmake.define.FLASH_KDA_BUILD_TESTS=OFF
     --config-settings=cmake.define.FLASH_KDA_CUDA=ON --config-settings=cmake.define.FLASH_KDA_CUDA_ARCHS=90a
     --config-settings=cmake.define.FLASH_KDA_TIMELINE=ON)
[[ -n "$CUTLASS_INC" ]] && cfg+=("--config-settings=cmake.define.CUTLASS_INCLUDE_DIR=$CUTLASS_INC")
rm -rf /tmp/tl_site /tmp/tl_build
if ! FLASH_KDA_CUDA=ON FLASH_KDA_CUDA_ARCHS=90a CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/tl_site "${cfg[@]}" . >"$OUT/timeline_build.log" 2>&1; then
  tail -n 30 "$OUT/timeline_build.log"; echo "timeline_device: the timeline build failed"; exit 1
fi
(cd /tmp && PYTHONPATH=/tmp/tl_site:$PYTHONPATH python3 "$OLDPWD/bench/probe_timeline.py" --json "$OUT/timeline.json" "$@")
