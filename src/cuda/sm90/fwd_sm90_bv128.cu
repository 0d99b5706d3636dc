// Instantiation of the SM90 forward: 128-row value blocks, FlashKDA's lower-bounded gate.
#include "cuda/sm90/fwd_launch.cuh"

namespace flash_kda::sm90 {
template cudaError_t launch_fwd<128, false, false>(const FwdKernelParams&, int, cudaStream_t);
}  // namespace flash_kda::sm90
