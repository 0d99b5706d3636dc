#!/usr/bin/env bash
# The SASS of one forward instantiation with inline line info, for
# bench/tools/ncu_attribute.py:
#
#   bash bench/tools/disasm_tu.sh bv128 /tmp/bv128.dis [BUILD_DIR]
#
# Compiles src/cuda/sm90/fwd_sm90_<TU>.cu to a cubin with the flags of the
# CMake build (include paths from BUILD_DIR, default build-cuda, configured
# with FLASH_KDA_CUDA=ON) and runs `nvdisasm -gi`. nvdisasm: from PATH, or
# from the pip package nvidia-cuda-nvdisasm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
TU=${1:?usage: disasm_tu.sh TU OUT.dis [BUILD_DIR]}
OUT=${2:?usage: disasm_tu.sh TU OUT.dis [BUILD_DIR]}
BUILD=${3:-build-cuda}
RSP=$BUILD/src/cuda/CMakeFiles/flash_kda_cuda.dir/includes_CUDA.rsp
[[ -f $RSP ]] || { echo "no $RSP: configure $BUILD with -DFLASH_KDA_CUDA=ON first" >&2; exit 2; }
NVDISASM=$(command -v nvdisasm || true)
if [[ -z $NVDISASM ]]; then
  NVDISASM=$(python3 -c "import glob, nvidia, os; print((glob.glob(os.path.join(os.path.dirname(nvidia.__path__[0]), 'nvidia', '*', 'bin', 'nvdisasm')) + [''])[0])" 2>/dev/null || true)
fi
[[ -x $NVDISASM ]] || { echo "nvdisasm not found (pip install nvidia-cuda-nvdisasm)" >&2; exit 2; }
CUBIN=$(mktemp /tmp/disasm_tu.XXXXXX.cubin)
nvcc -O3 -DNDEBUG -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -lineinfo -std=c++17 \
  --options-file "$RSP" -cubin -o "$CUBIN" "src/cuda/sm90/fwd_sm90_$TU.cu"
"$NVDISASM" -gi -c "$CUBIN" >"$OUT"
rm -f "$CUBIN"
echo "$OUT: $(grep -cE '/\*[0-9a-f]{4,6}\*/' "$OUT") instructions"
