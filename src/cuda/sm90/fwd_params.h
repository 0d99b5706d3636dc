// Plain parameters of the SM90 forward kernel, filled by the launcher from
// validated FwdParams. Host- and device-visible; 64-bit offsets throughout.
#pragma once

#include <cstdint>

namespace flash_kda::sm90 {

enum class StateKind : int { kNone = 0, kBFloat16 = 1, kFloat32 = 2 };

struct FwdKernelParams {
  const void* q;      // bf16 [rows, H, 128]   (rows = B * T)
  const void* k;
  const void* v;
  const void* g;
  const void* beta;   // bf16 [rows, H]
  void* out;          // bf16 [rows, H, 128]
  const float* A_log;    // [H]
  const float* dt_bias;  // [H, 128]
  const void* initial_state;  // [N, H, 128 (v), 128 (k)] or null
  void* final_state;
  StateKind initial_kind;
  StateKind final_kind;
  const int64_t* cu_seqlens;  // [N + 1] or null (fixed length)
  const int32_t* status;      // device status word written by the cu_seqlens check, or null
  int64_t seq_len;            // T when fixed length
  int64_t total_rows;         // B * T
  int heads;
  int num_sequences;
  int num_vblocks;            // 128 / BV
  float scale;
  float gate_scale;           // lower_bound * log2(e): gates applied in base 2
};

}  // namespace flash_kda::sm90
