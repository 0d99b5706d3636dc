// Small device helpers of the decode kernels: index loads, bf16 packing.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "common/constants.h"
#include "cuda/decode/decode_params.h"

namespace flash_kda::decode_gpu {

using bf16 = __nv_bfloat16;

// Element i of an int32 or int64 device array.
__device__ __forceinline__ int64_t load_index(const void* p, bool is_int64, int64_t i) {
  return is_int64 ? static_cast<const int64_t*>(p)[i] : int64_t(static_cast<const int32_t*>(p)[i]);
}

__device__ __forceinline__ float4 load_bf16x4(const void* base, int64_t element) {
  const uint2 raw = *reinterpret_cast<const uint2*>(static_cast<const bf16*>(base) + element);
  const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
  const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
  return make_float4(lo.x, lo.y, hi.x, hi.y);
}

__device__ __forceinline__ float load_bf16(const void* base, int64_t element) {
  return __bfloat162float(static_cast<const bf16*>(base)[element]);
}

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + __expf(-x)); }

// Sum over the kLanes consecutive lanes that share a state row.
template <int kLanes>
__device__ __forceinline__ float row_sum(float x) {
#pragma unroll
  for (int offset = 1; offset < kLanes; offset *= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

}  // namespace flash_kda::decode_gpu
