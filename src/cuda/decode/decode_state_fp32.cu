// The decode kernel for fp32 state pools (one instantiation per file).
#include "cuda/decode/decode_kernel.cuh"
#include "cuda/decode/decode_launch.h"

namespace flash_kda::decode_gpu {
template cudaError_t launch_decode<StateType::kFloat32>(const DecodeKernelParams&, cudaStream_t);
}  // namespace flash_kda::decode_gpu
