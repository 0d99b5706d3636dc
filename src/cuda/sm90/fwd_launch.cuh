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
  if constexpr (Traits::kCluster == 1) {
    kda_fwd_kernel<kBV, kUnbounded, kCheckpoints><<<grid, Traits::kThreads, Traits::kSmemBytes, stream>>>(params);
    return cudaGetLastError();
  } else {
    cudaLaunchAttribute cluster{};
    cluster.id = cudaLaunchAttributeClusterDimension;
    cluster.val.clusterDim.x = Traits::kCluster;  // the value blocks of one (sequence, head)
    cluster.val.clusterDim.y = 1;
    cluster.val.clusterDim.z = 1;
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = dim3(Traits::kThreads);
    config.dynamicSmemBytes = Traits::kSmemBytes;
    config.stream = stream;
    config.attrs = &cluster;
    config.numAttrs = 1;
    return cudaLaunchKernelEx(&config, kda_fwd_kernel<kBV, kUnbounded, kCheckpoints>, params);
  }
}

template <int kBV>
int max_resident_clusters(int device) {
  using Traits = FwdKernelTraits<kBV>;
  // Per device, computed once (the answer depends only on the GPU and the
  // kernel's resources, which all variants of one width share).
  static std::atomic<int> cached[64] = {};
  const int slot = device & 63;
  const int known = cached[slot].load(std::memory_order_acquire);
  if (known > 0) return known;
  auto kernel = kda_fwd_kernel<kBV, false, false>;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Traits::kSmemBytes)) !=
      cudaSuccess)
    return 0;
  int count = 0;
  if constexpr (Traits::kCluster == 1) {
    int per_sm = 0, sms = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, Traits::kThreads, Traits::kSmemBytes) !=
            cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess)
      return 0;
    count = per_sm * sms;
  } else {
    cudaLaunchAttribute cluster{};
    cluster.id = cudaLaunchAttributeClusterDimension;
    cluster.val.clusterDim.x = Traits::kCluster;
    cluster.val.clusterDim.y = 1;
    cluster.val.clusterDim.z = 1;
    cudaLaunchConfig_t config{};
    config.gridDim = dim3(Traits::kCluster);
    config.blockDim = dim3(Traits::kThreads);
    config.dynamicSmemBytes = Traits::kSmemBytes;
    config.attrs = &cluster;
    config.numAttrs = 1;
    if (cudaOccupancyMaxActiveClusters(&count, kernel, &config) != cudaSuccess) return 0;
  }
  cached[slot].store(count, std::memory_order_release);
  return count;
}

}  // namespace flash_kda::sm90
