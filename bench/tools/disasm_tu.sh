#!/usr/bin/env bash
# The SASS of one forward instantiation with inline line info, for
# bench/tools/ncu_attribute.py:
#
#   bash bench/tools/disasm_tu.sh bv128 /tmp/bv128.dis
#
# Compiles src/cuda/sm90/fwd_sm90_<TU>.cu to a cubin with the kernel flags of
# src/cuda/CMakeLists.txt (sm_90a, -O3, -lineinfo) and runs `nvdisasm -gi`.
# CUTLASS headers: $CUTLASS_INCLUDE_DIR, else the nvidia-cutlass package's.
# nvdisasm: from PATH, else from the pip package nvidia-cuda-nvdisasm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
TU=${1:?usage: disasm_tu.sh TU OUT.dis}
OUT=${2:?usage: disasm_tu.sh TU OUT.dis}
CUTLASS_INC=${CUTLASS_INCLUDE_DIR:-$(python3 -c "import importlib.util, os; s = importlib.util.find_spec('cutlass_library'); print(os.path.join(os.path.dirname(s.origin), 'source', 'include') if s else '')" 2>/dev/null || true)}
[[ -f $CUTLASS_INC/cute/tensor.hpp ]] || { echo "CUTLASS headers not found (set CUTLASS_INCLUDE_DIR)" >&2; exit 2; }
NVDISASM=$(command -v nvdisasm || true)
if [[ -z $NVDISASM ]]; then
  NVDISASM=$(python3 -c "import glob, nvidia, os; print((glob.glob(os.path.join(list(nvidia.__path__)[0], '*', 'bin', 'nvdisasm')) + [''])[0])" 2>/dev/null || true)
fi
[[ -n $NVDISASM && -x $NVDISASM ]] || { echo "nvdisasm not found (pip install nvidia-cuda-nvdisasm)" >&2; exit 2; }
CUBIN=$(mktemp /tmp/disasm_tu.XXXXXX.cubin)
nvcc -O3 -DNDEBUG -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -lineinfo -std=c++17 \
  -Iinclude -Isrc -I"$CUTLASS_INC" -cubin -o "$CUBIN" "src/cuda/sm90/fwd_sm90_$TU.cu"
"$NVDISASM" -gi -c "$CUBIN" >"$OUT"
rm -f "$CUBIN"
echo "$OUT: $(grep -cE '/\*[0-9a-f]{4,6}\*/' "$OUT") instructions"
