// Instantiation of the SM90 forward: 32-row value blocks, softplus / precomputed gates.
#include "cuda/sm90/fwd_launch.cuh"

namespace flash_kda::sm90 {
template cudaError_t launch_fwd<32, true, false>(const FwdKernelParams&, int, cudaStream_t);
}  // namespace flash_kda::sm90
