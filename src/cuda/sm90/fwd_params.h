// Plain parameters of the SM90 forward kernel, filled by the launcher from
// validated FwdParams. Host- and device-visible; 64-bit offsets throughout.
#pragma once

#include <cuda.h>  // CUtensorMap

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

// Which index arrays are int32 (the others int64): one runtime-uniform
// branch per load, no extra kernel instantiations.
enum IndexBits : uint32_t {
  kCuSeqlensInt32 = 1,
  kStateIndicesInt32 = 2,
  kFinalStateIndicesInt32 = 4,
  kCheckpointOffsetsInt32 = 8,
};

// One varlen sequence as the device check hands it to the forward: its first
// token row, its length and its index. A CTA reads it in one 16-byte load
// (with the status word: one memory round trip before its first TMA, where
// the order entry and then cu_seqlens took two).
struct alignas(16) SequenceRun {
  int64_t begin;
  int32_t length;
  int32_t sequence;
};

struct FwdKernelParams {
  // TMA descriptors of q, k, g (bf16 g only) and v as [rows][H][128] tensors
  // (3-D, boxes of 16 rows x 1 head x 128 columns, kBV columns for v): one
  // instruction loads a chunk's rows (zeros past the last row).
  CUtensorMap tmap_q;
  CUtensorMap tmap_k;
  CUtensorMap tmap_g;
  CUtensorMap tmap_v;
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
  const void* cu_seqlens;     // [N + 1] int64 or int32 (kCuSeqlensInt32), or null (fixed length)
  const int32_t* status;      // device status word written by the cu_seqlens check, or null
  // Varlen: the sequences by chunk count, longest first, each with its rows
  // (written by the device check); the CTAs take them in this order. Null:
  // sequence order, rows from cu_seqlens.
  const SequenceRun* sequence_runs;
  // Serving: state pools by slot, checkpoints (docs/kda.md); null / 0 when unused.
  const void* state_indices;        // [N]: slot of sequence n in the state pools; < 0 = padding
  const void* final_state_indices;  // [N] or null: slot the final state goes to (< 0: none)
  const uint8_t* zero_start;        // [N] or null: nonzero = start from zeros
  void* checkpoints;                // [checkpoint_rows, H, 128 (v), 128 (k)] or null
  const void* checkpoint_offsets;   // [N + 1]: first checkpoint row of each sequence
  StateKind checkpoint_kind;
  int checkpoint_chunks;            // checkpoint_interval / kChunk; 0 = no checkpoints
  int64_t initial_slots;            // first dims of the states (bounds of defensive reads)
  int64_t final_slots;
  int64_t checkpoint_rows;
  uint32_t int32_indices;           // IndexBits of the index arrays stored as int32
  int64_t beta_stride_b, beta_stride_t, beta_stride_h;  // beta [B, T, H], in elements
  int64_t seq_len;            // T when fixed length
  int64_t total_rows;         // B * T
  int heads;
  int num_sequences;          // work items per head: sequences (x segment_count with segments)
  int num_vblocks;            // 128 / BV
  float scale;
  float gate_scale;           // lower_bound * log2(e): gates applied in base 2
  GateKind gate_kind;
  float min_gate;             // kMinTokenLogDecay * log2(e): clamp of the unbounded gates

  // Context parallelism (fixed length only; cuda_backend.cpp's SegmentPlan):
  // each sequence is cut into `segments` pieces of segment_len tokens and a
  // launch covers segments [segment_first, segment_first + segment_count) of
  // every sequence (grid x: sequence-major, then segment, then value block).
  // segments == 0: off, one work item per sequence.
  int segments;
  int segment_first;
  int segment_count;
  int64_t segment_len;
  // fp32 [N * segments, H, 128, 128]. segment_initial: segment j starts from
  // slot n * segments + j; null: segment 0 from initial_state, the others
  // from zeros. segment_final: segment j ends in slot n * segments + j + 1
  // (where the next segment's initial state is read) instead of final_state,
  // and segment 0 also copies its initial state to slot n * segments (the
  // last pass reads it from there: final_state may alias initial_state);
  // null: only the last segment writes final_state.
  const float* segment_initial;
  float* segment_final;
  bool identity_start;  // transition runs: every segment starts from the identity...
  bool zero_values;     // ...with v read as zeros (so the end state is the segment's transition matrix)
  bool skip_output;     // out is not written
};

}  // namespace flash_kda::sm90
