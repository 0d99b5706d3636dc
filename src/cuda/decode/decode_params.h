// Plain parameters and tile constants of the CUDA decode kernels, filled by
// the launcher (decode_backend.cpp) from validated DecodeParams.
// Host- and device-visible; 64-bit offsets throughout.
#pragma once

#include <cstdint>

#include "flash_kda/flash_kda.h"

namespace flash_kda::decode_gpu {

// One CTA updates kRowsPerCta value rows of one (sequence, head) state;
// kLanesPerRow threads share a 128-wide row, each holding kValuesPerThread
// fp32 values of it in registers (dot products over K: 3 shuffle steps).
inline constexpr int kRowsPerCta = 32;
inline constexpr int kLanesPerRow = 8;
inline constexpr int kThreads = kRowsPerCta * kLanesPerRow;        // 256
inline constexpr int kValueBlocks = kHeadDim / kRowsPerCta;        // CTAs per (sequence, head)
inline constexpr int kValuesPerThread = kHeadDim / kLanesPerRow;   // 16
// Bytes of the status word (padded) at the start of the workspace.
inline constexpr size_t kStatusBytes = 256;

enum class StateType : int { kBFloat16 = 0, kFloat32 = 1 };

struct DecodeKernelParams {
  const void* q;      // bf16 [total, H, 128]   (total = N * t, or the packed length)
  const void* k;
  const void* v;
  const void* g;
  const void* beta;   // bf16 [total, H]
  void* out;          // bf16 [total, H, 128]
  const float* A_log;    // [H]
  const float* dt_bias;  // [H, 128]
  void* state;           // [P, H, 128 (v), 128 (k)], bf16 or fp32, updated in place
  const void* state_indices;  // int32/int64 [N]
  const void* cu_seqlens;     // int32/int64 [N + 1], or null (fixed layout)
  int32_t* status;            // written by the check kernel, read by the decode kernel
  int64_t pool_size;          // P
  int64_t total_tokens;
  int64_t num_sequences;      // N
  int tokens;                 // t (fixed layout); 0 with cu_seqlens
  int heads;
  bool indices_int64;
  bool cu_seqlens_int64;
  float scale;
  float gate_scale;           // lower_bound * log2(e): gates applied in base 2
};

}  // namespace flash_kda::decode_gpu
