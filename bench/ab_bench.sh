#!/usr/bin/env bash
# Before/after timing in one GPU run, so that a kernel change is judged on the
# same machine, clocks and inputs as its base:
#
#   git archive <base-rev> | tar -x -C .base        # here, before the device call
#   bash bench/ab_bench.sh .base [ROUNDS]          # there, after run_device.sh installed HEAD
#
# Builds BASE into /tmp/ab_base (pip --target, sm_90a, no tests), then runs
# bench/bench_fwd.py --no-fla ROUNDS times (default 2) for each side,
# alternating base / current so that drift hits both, and prints the median
# of each case's per-round times and their ratio (bench/ab_compare.py).
# BASE "current": no build, both sides run the installed build, the base
# side with the variables of AB_BASE_ENV (e.g. "FLASH_KDA_VALUE_BLOCK=64": a
# launch choice against the default).
# Environment: AB_SCRIPT (default bench_fwd.py; bench_decode.py takes the
# same --no-fla / --json / --cases), AB_CASES (--cases), AB_ARGS (e.g. "--gate softplus
# --repeats 100"), AB_TAG (suffix of the result files), AB_SKIP_BUILD=1 (reuse
# /tmp/ab_base), OUT (results folder: ab<tag>.md and ab<tag>_raw.tar.gz with
# every round's JSON and log; few files, as the device returns at most 8).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
BASE=${1:?usage: ab_bench.sh BASE_DIR [ROUNDS]}
ROUNDS=${2:-2}
OUT=${OUT:-/tmp/flash_kda_out}
mkdir -p "$OUT"
RAW=$(mktemp -d /tmp/ab_raw.XXXXXX)
# The carried wheels run_device.sh installed (scikit-build-core >= 1.1.2 for
# the base's build): a separate command does not inherit its PYTHONPATH.
[[ -d /tmp/site ]] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
CUTLASS_INC=$(python3 -c "import importlib.util, os; s = importlib.util.find_spec('cutlass_library'); print(os.path.join(os.path.dirname(s.origin), 'source', 'include') if s else '')" 2>/dev/null)
# AB_SKIP_BUILD=1: reuse /tmp/ab_base from an earlier call in the same run
if [[ "$BASE" == current || ( "${AB_SKIP_BUILD:-0}" == 1 && -d /tmp/ab_base ) ]]; then :; else
# (the build dir too: a base from git archive keeps its commit's mtimes, so make would keep stale objects)
rm -rf /tmp/ab_base /tmp/ab_build
cfg=(--config-settings=build-dir=/tmp/ab_build --config-settings=cmake.define.FLASH_KDA_BUILD_TESTS=OFF
     --config-settings=cmake.define.FLASH_KDA_CUDA=ON --config-settings=cmake.define.FLASH_KDA_CUDA_ARCHS=90a)
[[ -n "$CUTLASS_INC" ]] && cfg+=("--config-settings=cmake.define.CUTLASS_INCLUDE_DIR=$CUTLASS_INC")
if ! (cd "$BASE" && FLASH_KDA_CUDA=ON FLASH_KDA_CUDA_ARCHS=90a CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
      python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/ab_base "${cfg[@]}" . \
      >"$RAW/ab_build.log" 2>&1); then
  tail -n 30 "$RAW/ab_build.log"; echo "ab_bench: the base did not build"; exit 1
fi
fi
files=()
for ((r = 0; r < ROUNDS; ++r)); do
  for side in base current; do
    json="$RAW/ab${AB_TAG:-}_${side}_$r.json"
    site=""; envs=()
    if [[ $side == base ]]; then
      if [[ "$BASE" == current ]]; then read -r -a envs <<<"${AB_BASE_ENV:-}"; else site=/tmp/ab_base; fi
    fi
    # shellcheck disable=SC2086
    (cd /tmp && env "${envs[@]}" PYTHONPATH=$site${site:+:}${PYTHONPATH:-} python3 "$OLDPWD/bench/${AB_SCRIPT:-bench_fwd.py}" --no-fla \
      --json "$json" ${AB_CASES:+--cases "$AB_CASES"} ${AB_ARGS:-} >"$RAW/ab${AB_TAG:-}_${side}_$r.log" 2>&1) ||
      { tail -n 20 "$RAW/ab${AB_TAG:-}_${side}_$r.log"; echo "ab_bench: $side round $r failed"; }
    files+=("$side=$json")
  done
done
python3 bench/ab_compare.py "${files[@]}" | tee "$OUT/ab${AB_TAG:-}.md"
tar czf "$OUT/ab${AB_TAG:-}_raw.tar.gz" -C "$RAW" .
