// Device-side check of cu_seqlens contents, so `fwd` needs no host sync:
// the forward kernel reads the status word and, when it is set, computes
// nothing and NaN-fills the outputs (see kStatusBadCuSeqlens).
#include "cuda/sm90/fwd_launch.h"

namespace flash_kda::sm90 {
namespace {

__global__ void check_cu_seqlens_kernel(const int64_t* cu, int64_t count, int64_t total, int32_t* status) {
  __shared__ int bad;
  if (threadIdx.x == 0) bad = 0;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const int64_t here = cu[i];
    const bool ok = (i == 0 ? here == 0 : here >= cu[i - 1]) && (i != count - 1 || here == total);
    if (!ok) bad = 1;  // benign race: every writer stores 1
  }
  __syncthreads();
  if (threadIdx.x == 0) *status = bad;
}

}  // namespace

cudaError_t launch_check_cu_seqlens(const int64_t* cu_seqlens, int64_t count, int64_t total_rows,
                                    int32_t* status, cudaStream_t stream) {
  check_cu_seqlens_kernel<<<1, 256, 0, stream>>>(cu_seqlens, count, total_rows, status);
  return cudaGetLastError();
}

}  // namespace flash_kda::sm90
