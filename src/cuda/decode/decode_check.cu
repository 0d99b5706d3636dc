// Device-side check of a decode call's index tensors, so `decode` needs no
// host sync: cu_seqlens (0-based, 1..8 tokens per sequence, ending at the
// packed length), state_indices (< P; no slot named twice). The decode kernel
// reads the status word: bad cu_seqlens or duplicates poison the whole call,
// an index >= P poisons that sequence only. Launched only for calls of more
// than kFusedCheckMaxSequences sequences: smaller ones are checked by every
// decode CTA itself (check_loads / check_finish in decode_kernel.cuh, the same
// rules; keep the two in step).
#include "cuda/decode/decode_device_utils.cuh"
#include "cuda/decode/decode_launch.h"

namespace flash_kda::decode_gpu {
namespace {

constexpr int kCheckThreads = 1024;
constexpr int kTile = 2048;  // indices staged in shared memory per pass

__global__ void __launch_bounds__(kCheckThreads) decode_check_kernel(const DecodeKernelParams p) {
  __shared__ int64_t tile[kTile];
  __shared__ int bits;
  if (threadIdx.x == 0) bits = 0;
  const int64_t n = p.num_sequences;
  int mine = 0;

  if (p.cu_seqlens != nullptr) {
    for (int64_t i = threadIdx.x; i <= n; i += blockDim.x) {
      const int64_t here = load_index(p.cu_seqlens, p.cu_seqlens_int64, i);
      bool ok = true;
      if (i == 0) {
        ok = here == 0;
      } else {
        const int64_t len = here - load_index(p.cu_seqlens, p.cu_seqlens_int64, i - 1);
        ok = len >= 1 && len <= kMaxDecodeTokens;
      }
      if (i == n && here != p.total_tokens) ok = false;
      if (!ok) mine |= kDecodeStatusBadCuSeqlens;
    }
  }

  // Duplicates: entry i against every later entry j > i, one tile at a time.
  for (int64_t j0 = 0; j0 < n; j0 += kTile) {
    const int count = int(n - j0 < kTile ? n - j0 : kTile);
    __syncthreads();  // the previous tile is no longer read
    for (int j = threadIdx.x; j < count; j += blockDim.x)
      tile[j] = load_index(p.state_indices, p.indices_int64, j0 + j);
    __syncthreads();
    for (int64_t i = threadIdx.x; i < j0 + count; i += blockDim.x) {
      const int64_t slot = load_index(p.state_indices, p.indices_int64, i);
      if (j0 == 0 && slot >= p.pool_size) mine |= kDecodeStatusIndexOutOfRange;
      if (slot < 0 || slot >= p.pool_size || (mine & kDecodeStatusDuplicateIndex)) continue;
      for (int64_t j = i + 1 > j0 ? i + 1 - j0 : 0; j < count; ++j)
        if (tile[j] == slot) {
          mine |= kDecodeStatusDuplicateIndex;
          break;
        }
    }
  }
  // Entries past the first tile were range-checked above only if i < count of
  // tile 0; cover the rest.
  for (int64_t i = kTile + threadIdx.x; i < n; i += blockDim.x)
    if (load_index(p.state_indices, p.indices_int64, i) >= p.pool_size) mine |= kDecodeStatusIndexOutOfRange;

  __syncthreads();
  if (mine != 0) atomicOr(&bits, mine);
  __syncthreads();
  if (threadIdx.x == 0) *p.status = bits;
}

}  // namespace

cudaError_t launch_decode_check(const DecodeKernelParams& params, cudaStream_t stream) {
  decode_check_kernel<<<1, kCheckThreads, 0, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace flash_kda::decode_gpu
