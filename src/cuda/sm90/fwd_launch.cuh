// Definition of launch_fwd<kBV, kUnbounded, kCheckpoints>; included by one .cu file per instantiation.
#pragma once

#include <algorithm>
#include <atomic>

#include "cuda/sm90/fwd_kernel.cuh"
#include "cuda/sm90/fwd_launch.h"

namespace flash_kda::sm90 {

template <int kBV, bool kUnbounded, bool kCheckpoints>
cudaError_t launch_fwd(const FwdKernelParams& params, int ctas, int device, cudaStream_t stream) {
  using Traits = FwdKernelTraits<kBV>;
  auto* kernel = kda_fwd_kernel<kBV, kUnbounded, kCheckpoints>;
  // Per device, once: raise the dynamic shared-memory limit and count the
  // CTAs that run at once (SMs x CTAs per SM).
  static std::atomic<int> resident[64] = {};
  int slots = device >= 0 && device < 64 ? resident[device].load(std::memory_order_acquire) : 0;
  if (slots == 0) {
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Traits::kSmemBytes));
    int per_sm = 0, sms = 0;
    if (err == cudaSuccess)
      err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, Traits::kThreads, Traits::kSmemBytes);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    if (err != cudaSuccess) return err;
    slots = std::max(1, per_sm * sms);
    if (device >= 0 && device < 64) resident[device].store(slots, std::memory_order_release);
  }
  // One CTA per work item, or a persistent grid, each CTA taking several
  // items (work_item.cuh): the pipeline fills once per CTA, not per item.
  // Never fewer CTAs than ceil(items / kMaxWorkItems).
  const int64_t items = int64_t(params.num_sequences) * params.num_vblocks * params.heads;
  dim3 grid(unsigned(params.num_sequences) * unsigned(params.num_vblocks), unsigned(params.heads));
  const int64_t want = ctas == kPersistentAuto ? slots : ctas;
  if (ctas != 0 && items > want)
    grid = dim3(unsigned(std::max<int64_t>(want, (items + kMaxWorkItems - 1) / kMaxWorkItems)));
  kernel<<<grid, Traits::kThreads, Traits::kSmemBytes, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace flash_kda::sm90
