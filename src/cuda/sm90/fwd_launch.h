// Host-side launcher of the SM90 forward kernel, one explicit instantiation
// per value-block width (fwd_sm90_bv*.cu), so builds parallelise.
#pragma once

#include <cuda_runtime.h>

#include "cuda/sm90/fwd_params.h"

namespace flash_kda::sm90 {

// Value-block widths with a compiled kernel: 128 (8 recurrence warps),
// 64 (4) and 32 (2). Narrower blocks give more CTAs per head. kUnbounded:
// the softplus / precomputed gates; kCheckpoints: checkpoint states. One
// explicit instantiation per .cu file: fwd_sm90_bv<BV>[_unbounded][_checkpoints].cu.
template <int kBV, bool kUnbounded, bool kCheckpoints>
cudaError_t launch_fwd(const FwdKernelParams& params, int device, cudaStream_t stream);

// The instantiation for a runtime choice of gate family and checkpoints.
template <int kBV>
cudaError_t launch_fwd_variant(const FwdKernelParams& params, bool unbounded, bool checkpoints, int device,
                               cudaStream_t stream) {
  if (unbounded)
    return checkpoints ? launch_fwd<kBV, true, true>(params, device, stream)
                       : launch_fwd<kBV, true, false>(params, device, stream);
  return checkpoints ? launch_fwd<kBV, false, true>(params, device, stream)
                     : launch_fwd<kBV, false, false>(params, device, stream);
}

#define FLASH_KDA_DECLARE_FWD(BV, UNBOUNDED, CHECKPOINTS) \
  extern template cudaError_t launch_fwd<BV, UNBOUNDED, CHECKPOINTS>(const FwdKernelParams&, int, cudaStream_t);
#define FLASH_KDA_DECLARE_FWD_WIDTH(BV)     \
  FLASH_KDA_DECLARE_FWD(BV, false, false) \
  FLASH_KDA_DECLARE_FWD(BV, true, false)  \
  FLASH_KDA_DECLARE_FWD(BV, false, true)  \
  FLASH_KDA_DECLARE_FWD(BV, true, true)
FLASH_KDA_DECLARE_FWD_WIDTH(128)
FLASH_KDA_DECLARE_FWD_WIDTH(64)
FLASH_KDA_DECLARE_FWD_WIDTH(32)
#undef FLASH_KDA_DECLARE_FWD_WIDTH
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
  SequenceRun* runs;      // [N]: the sequences longest first with their rows (varlen), or null
};

// Sets *check.status to 0 when the index contents of `params` are valid
// (cu_seqlens 0-based, non-decreasing, ending at total_rows; slots in range
// and distinct; checkpoint_offsets matching the lengths), else to the bits
// of what is wrong; with check.runs, also writes the sequences by chunk
// count, longest first, with their rows. One CTA, no host synchronisation.
cudaError_t launch_check_arguments(const FwdKernelParams& params, const DeviceCheck& check, cudaStream_t stream);

// Context parallelism: S_{j+1} = S_j · M_j + R_j in place over the segments
// of each (sequence, head) (segment_combine.cu). No-op for fewer than 3 segments.
cudaError_t launch_segment_combine(float* states, const float* transitions, int64_t sequences, int heads,
                                   int segments, cudaStream_t stream);

}  // namespace flash_kda::sm90
