// Host-side launchers of the CUDA decode kernels. One explicit instantiation
// of the decode launcher (with both pass counts of its kernel) per state dtype
// (decode_state_bf16.cu, decode_state_fp32.cu).
#pragma once

#include <cuda_runtime.h>

#include "cuda/decode/decode_params.h"

namespace flash_kda::decode_gpu {

// Checks the device copies of cu_seqlens and state_indices and writes the
// status word (kDecodeStatus* bits). One CTA; O(N^2 / 1024) comparisons for
// the duplicate check, from shared memory.
cudaError_t launch_decode_check(const DecodeKernelParams& params, cudaStream_t stream);

// The decode step; reads the status word the check left, or, with
// params.fused_check (N <= kFusedCheckMaxSequences), does the check in every
// CTA itself (no check launch) and CTA (0, 0) writes the status word.
// `device` is the current device (the kernels' shared-memory limit is raised
// once per device), `sm_count` its SMs (they pick the passes per CTA).
template <StateType kState>
cudaError_t launch_decode(const DecodeKernelParams& params, int device, int sm_count, cudaStream_t stream);

extern template cudaError_t launch_decode<StateType::kBFloat16>(const DecodeKernelParams&, int, int, cudaStream_t);
extern template cudaError_t launch_decode<StateType::kFloat32>(const DecodeKernelParams&, int, int, cudaStream_t);

}  // namespace flash_kda::decode_gpu
