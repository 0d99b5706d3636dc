// The decode kernel for bf16 state pools (both pass counts, one file per dtype).
#include "cuda/decode/decode_kernel.cuh"
#include "cuda/decode/decode_launch.h"

namespace flash_kda::decode_gpu {
template cudaError_t launch_decode<StateType::kBFloat16>(const DecodeKernelParams&, int, int, cudaStream_t);
}  // namespace flash_kda::decode_gpu
