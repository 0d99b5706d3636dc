// Instantiation of the SM90 forward: 64-row value blocks, softplus / precomputed gates, checkpoint states.
#include "cuda/sm90/fwd_launch.cuh"

namespace flash_kda::sm90 {
template cudaError_t launch_fwd<64, true, true>(const FwdKernelParams&, int, cudaStream_t);
}  // namespace flash_kda::sm90
