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

// Workspace and bounds of the device argument check.
struct DeviceCheck {
  int32_t* status;        // the status word (bits: kStatusBadCuSeqlens, ...)
  uint32_t* bitmaps;      // read_words + write_words words of slot bitmaps
  int64_t read_words;     // ceil(read_bound / 32) when state_indices is given, else 0
  int64_t write_words;    // ceil(write_bound / 32) when final_state_indices is given, else 0
  int64_t read_bound;     // state_indices entries must be < this
  int64_t write_bound;    // final_state_indices entries must be < this
  bool in_place;          // final_state is the very same tensor as initial_state
};

// Sets *check.status to 0 when the index contents of `params` are valid
// (cu_seqlens 0-based, non-decreasing, ending at total_rows; slots in range
// and distinct; checkpoint_offsets matching the lengths), else to the bits
// of what is wrong. One CTA, no host synchronisation.
cudaError_t launch_check_arguments(const FwdKernelParams& params, const DeviceCheck& check, cudaStream_t stream);

}  // namespace flash_kda::sm90
