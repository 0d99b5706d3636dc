// Plain parameters of the SM90 forward kernel, filled by the launcher from
// validated FwdParams. Host- and device-visible; 64-bit offsets throughout.
#pragma once

#include <cstdint>

namespace flash_kda::sm90 {

enum class StateKind : int { kNone = 0, kBFloat16 = 1, kFloat32 = 2 };

// How the kernel turns g into a base-2 log decay (flash_kda::GateMode).
enum class GateKind : int {
  kLowerBound = 0,      // gate_scale * sigmoid(a (g + dt_bias))
  kSoftplus = 1,        // max(-a log2(1 + 2^(log2e (g + dt_bias))), min_gate)
  kPrecomputed = 2,     // max(log2e g, min_gate), g bf16
  kPrecomputedF32 = 3,  // the same, g fp32 (read directly, not through the raw stage)
};

struct FwdKernelParams {
  const void* q;      // bf16 [rows, H, 128]   (rows = B * T)
  const void* k;
  const void* v;
  const void* g;
  const void* beta;   // bf16 [rows, H]
  void* out;          // bf16 [rows, H, 128]
  const float* A_log;    // [H], null for precomputed gates
  const float* dt_bias;  // [H, 128], null = zeros
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
  GateKind gate_kind;
  float min_gate;             // kMinTokenLogDecay * log2(e): clamp of the unbounded gates
};

}  // namespace flash_kda::sm90
