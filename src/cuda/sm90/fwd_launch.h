// Host-side launcher of the SM90 forward kernel, one explicit instantiation
// per value-block width (fwd_sm90_bv*.cu), so builds parallelise.
#pragma once

#include <cuda_runtime.h>

#include "cuda/sm90/fwd_params.h"

namespace flash_kda::sm90 {

// Value-block widths with a compiled kernel: 128 (8 recurrence warps),
// 64 (4) and 32 (2). Narrower blocks give more CTAs per head. kUnbounded:
// the softplus / precomputed gates (fwd_sm90_bv*_unbounded.cu).
template <int kBV, bool kUnbounded>
cudaError_t launch_fwd(const FwdKernelParams& params, int device, cudaStream_t stream);

#define FLASH_KDA_DECLARE_FWD(BV, UNBOUNDED) \
  extern template cudaError_t launch_fwd<BV, UNBOUNDED>(const FwdKernelParams&, int, cudaStream_t);
FLASH_KDA_DECLARE_FWD(128, false)
FLASH_KDA_DECLARE_FWD(64, false)
FLASH_KDA_DECLARE_FWD(32, false)
FLASH_KDA_DECLARE_FWD(128, true)
FLASH_KDA_DECLARE_FWD(64, true)
FLASH_KDA_DECLARE_FWD(32, true)
#undef FLASH_KDA_DECLARE_FWD

// Sets status[0] to 0 when cu_seqlens[0] == 0, it never decreases and
// cu_seqlens[count - 1] == total_rows; to 1 otherwise.
cudaError_t launch_check_cu_seqlens(const int64_t* cu_seqlens, int64_t count, int64_t total_rows,
                                    int32_t* status, cudaStream_t stream);

}  // namespace flash_kda::sm90
