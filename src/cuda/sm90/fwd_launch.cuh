// Definition of launch_fwd<kBV, kUnbounded, kCheckpoints>; included by one .cu file per instantiation.
#pragma once

#include <atomic>

#include "cuda/sm90/fwd_kernel.cuh"
#include "cuda/sm90/fwd_launch.h"

namespace flash_kda::sm90 {

template <int kBV, bool kUnbounded, bool kCheckpoints>
cudaError_t launch_fwd(const FwdKernelParams& params, int device, cudaStream_t stream) {
  using Traits = FwdKernelTraits<kBV>;
  // Raise the dynamic shared-memory limit once per device, not per call.
  static std::atomic<uint64_t> configured{0};
  const uint64_t bit = uint64_t(1) << (device & 63);
  if (!(configured.load(std::memory_order_acquire) & bit)) {
    const cudaError_t err = cudaFuncSetAttribute(kda_fwd_kernel<kBV, kUnbounded, kCheckpoints>,
                                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 int(Traits::kSmemBytes));
    if (err != cudaSuccess) return err;
    configured.fetch_or(bit, std::memory_order_acq_rel);
  }
  const dim3 grid(unsigned(params.num_sequences) * unsigned(params.num_vblocks), unsigned(params.heads));
  kda_fwd_kernel<kBV, kUnbounded, kCheckpoints><<<grid, Traits::kThreads, Traits::kSmemBytes, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace flash_kda::sm90
