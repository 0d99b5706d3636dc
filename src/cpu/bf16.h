// bfloat16 conversions and dtype-generic element access for host TensorRefs.
// bf16 is the top half of an IEEE float: 1 sign, 8 exponent, 7 mantissa bits.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "flash_kda/flash_kda.h"

namespace flash_kda::cpu {

inline float bf16_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest, ties to even. NaN stays NaN (made quiet, sign kept);
// values past the largest bf16 round to infinity, as IEEE rounding does.
inline uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if (std::isnan(f)) return static_cast<uint16_t>((bits >> 16) | 0x0040);
  const uint32_t lsb = (bits >> 16) & 1;
  return static_cast<uint16_t>((bits + 0x7FFF + lsb) >> 16);
}

// double -> bf16 with a single correct rounding. Going through float with
// round-to-nearest could round twice (wrongly at some ties); rounding the
// float step to odd instead keeps the information the second rounding needs
// (float has >= 2 more bits than bf16 at every magnitude, subnormals included).
inline uint16_t double_to_bf16(double d) {
  float f = static_cast<float>(d);
  if (std::isfinite(d) && static_cast<double>(f) != d) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    if (std::fabs(static_cast<double>(f)) > std::fabs(d)) bits -= 1;  // truncate toward zero
    bits |= 1;                                                         // ... and make it odd
    std::memcpy(&f, &bits, sizeof f);
  }
  return float_to_bf16(f);
}

// Element `i` (flat, row-major) of a contiguous host tensor of dtype
// bf16/fp32/fp64, as double. Other dtypes read as NaN (validated away).
inline double load_element(const TensorRef& t, int64_t i) {
  switch (t.dtype) {
    case DType::kBFloat16: return bf16_to_float(static_cast<const uint16_t*>(t.data)[i]);
    case DType::kFloat32: return static_cast<const float*>(t.data)[i];
    case DType::kFloat64: return static_cast<const double*>(t.data)[i];
    default: return std::nan("");
  }
}

// Element `i` of a contiguous host int32/int64 index tensor (cu_seqlens,
// state_indices, checkpoint_offsets), or of a bool/uint8 flag tensor.
inline int64_t load_index(const TensorRef& t, int64_t i) {
  switch (t.dtype) {
    case DType::kInt32: return static_cast<const int32_t*>(t.data)[i];
    case DType::kInt64: return static_cast<const int64_t*>(t.data)[i];
    case DType::kUInt8:
    case DType::kBool: return static_cast<const uint8_t*>(t.data)[i];
    default: return 0;
  }
}

// Writes `x` into element `i` of a bf16/fp32/fp64 host tensor, rounded once.
inline void store_element(const TensorRef& t, int64_t i, double x) {
  switch (t.dtype) {
    case DType::kBFloat16: static_cast<uint16_t*>(t.data)[i] = double_to_bf16(x); break;
    case DType::kFloat32: static_cast<float*>(t.data)[i] = static_cast<float>(x); break;
    case DType::kFloat64: static_cast<double*>(t.data)[i] = x; break;
    default: break;
  }
}

}  // namespace flash_kda::cpu
