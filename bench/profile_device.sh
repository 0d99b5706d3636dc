#!/usr/bin/env bash
# Nsight Compute on the GPU machine, summarised to text (reports are too big
# to bring back): builds through run_device.sh unless SKIP_BUILD=1, then per
# case of bench/profile_case.py one `ncu --set full` of the first forward
# launch, and into $OUT/ncu_<case>.txt: the details page (throughput, issue
# slots, warp states, pipes, shared-memory conflicts), the SASS instructions
# with the most stall samples (bench/tools/ncu_top_lines.py) and, for anchor,
# anchor64, softplus64, checkpoints and plain, the samples per kernel-source line
# (bench/tools/ncu_attribute.py, disassembly by bench/tools/disasm_tu.sh).
#
#   PROFILE_CASES="anchor,anchor64,softplus64" bash bench/profile_device.sh
#
# Other run_device.sh steps run only when asked (the SKIP_* defaults here are 1
# except the build); SANITIZER_TOOLS / SKIP_SANITIZER pass through.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
OUT=${OUT:-/tmp/flash_kda_out}
mkdir -p "$OUT"
export OUT
SKIP_TESTS=${SKIP_TESTS:-1} SKIP_SANITIZER=${SKIP_SANITIZER:-1} SKIP_BENCH=${SKIP_BENCH:-1} \
  SKIP_SOFTPLUS_BENCH=${SKIP_SOFTPLUS_BENCH:-1} SKIP_POOL_BENCH=${SKIP_POOL_BENCH:-1} \
  SKIP_DECODE_BENCH=${SKIP_DECODE_BENCH:-1} SKIP_HOST_BENCH=${SKIP_HOST_BENCH:-1} \
  SKIP_WHEEL_SMOKE=${SKIP_WHEEL_SMOKE:-1} SKIP_NATIVE_BUILD=${SKIP_NATIVE_BUILD:-1} \
  SKIP_TRITON_CACHE=${SKIP_TRITON_CACHE:-1} WARM_FLA=${WARM_FLA:-0} FLASH_KDA_CPP_TESTS=${FLASH_KDA_CPP_TESTS:-0} \
  RUN_BUDGET_S=${RUN_BUDGET_S:-300} bash bench/run_device.sh >"$OUT/run_device.log" 2>&1
echo "run_device.sh: exit $? (log: run_device.log)"; tail -n 25 "$OUT/run_device.log"
[[ -d /tmp/site ]] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
IFS=, read -r -a cases <<<"${PROFILE_CASES:-anchor,anchor64,softplus64}"
for c in "${cases[@]}"; do
  t=$SECONDS
  rep=/tmp/prof_$c
  timeout "${PROFILE_CASE_TIMEOUT_S:-150}" ncu --set full --import-source yes -k regex:kda_fwd_kernel -c 1 \
    -f -o "$rep" python3 bench/profile_case.py --cases "$c" >"$OUT/ncu_${c}_run.log" 2>&1
  echo "ncu $c: exit $? ($((SECONDS - t)) s)"
  # Per-instruction tables (SASS, and SASS with its CUDA lines) and the raw
  # metrics, for reading on the host: xz, one archive per case.
  mkdir -p "/tmp/prof_tab_$c"
  for view in sass cuda,sass cuda; do
    ncu --import "$rep.ncu-rep" --page source --csv --print-source "$view" >"/tmp/prof_tab_$c/source_${view/,/_}.csv" 2>&1
  done
  ncu --import "$rep.ncu-rep" --page raw --csv >"/tmp/prof_tab_$c/raw.csv" 2>&1
  tar -C /tmp -cJf "$OUT/ncu_${c}_tables.tar.xz" "prof_tab_$c"
  {
    echo "### $c: details"
    ncu --import "$rep.ncu-rep" --page details 2>&1
    echo "### $c: source lines by stall samples"
    python3 bench/tools/ncu_top_lines.py "$rep.ncu-rep" "${PROFILE_TOP_LINES:-45}" 2>&1
    # By outermost kernel-source line (bench/tools/ncu_attribute.py), for the
    # cases whose instantiation and chunk count are known.
    case $c in
      anchor) tu=bv128 chunks=49152 ;;
      anchor64) tu=bv64 chunks=65536 ;;
      softplus64) tu=bv64_unbounded chunks=65536 ;;
      # 64 x 512 tokens, H=32: 2048 CTAs (value block 128) x 32 chunks
      checkpoints) tu=bv128_checkpoints chunks=65536 ;;
      plain) tu=bv128 chunks=65536 ;;
      *) tu= ;;
    esac
    if [[ -n $tu ]]; then
      echo "### $c: by kernel-source line (fwd_sm90_$tu, per CTA-chunk)"
      bash bench/tools/disasm_tu.sh "$tu" "/tmp/prof_$tu.dis" 2>&1 | tail -n 2 &&
        python3 bench/tools/ncu_attribute.py "/tmp/prof_tab_$c" "/tmp/prof_$tu.dis" "$chunks" --top 45 2>&1
    fi
  } >"$OUT/ncu_$c.txt"
  tail -n 3 "$OUT/ncu_${c}_run.log"
done
grep -hE "^### |Duration|Issue Slots Busy|Executed Ipc Active|No Eligible|Compute \(SM\) Throughput|L1/TEX Cache Throughput|Warp Cycles Per Issued" "$OUT"/ncu_*.txt | grep -v "source lines"
# At most 8 files come back: the logs go into one archive.
(cd "$OUT" && tar czf profile_logs.tar.gz --exclude '*.tar.*' --exclude 'ncu_*.txt' ./* 2>/dev/null &&
  find . -maxdepth 1 -type f ! -name 'ncu_*.txt' ! -name '*.tar.xz' ! -name 'profile_logs.tar.gz' ! -name results.md -delete) || true
ls -la "$OUT"
