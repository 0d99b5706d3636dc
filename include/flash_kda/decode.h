// flash-kda public C++ API, part 2: the decode step over a state pool.
//
// Same math as `fwd` (docs/kda.md), for 1..8 new tokens per sequence against
// states kept between calls in a pool, updated in place:
//
//   flash_kda::DecodeParams p;         // q, k, v, g, beta, out, A_log, dt_bias, state, state_indices
//   size_t bytes = flash_kda::decode_workspace_size(p);
//   flash_kda::decode(p, workspace, bytes, stream);   // throws flash_kda::Error
//
// Included by flash_kda.h; not meant to be included on its own.
#pragma once

#include "flash_kda/flash_kda.h"

namespace flash_kda {

// Most new tokens per sequence in one decode call.
inline constexpr int kMaxDecodeTokens = 8;

// Arguments of `decode`. Tokens come in one of two layouts:
//  * fixed:  q, k, g [N, t, H, K]; v, out [N, t, H, V]; beta [N, t, H]
//            (every sequence has t tokens, 1 <= t <= 8);
//  * packed: the same tensors with a leading 1: [1, total, H, *], and
//            cu_seqlens [N + 1] (sequence i is tokens cu_seqlens[i] ..
//            cu_seqlens[i + 1], 1..8 tokens each).
struct DecodeParams {
  TensorRef q;        // bf16 [N, t, H, K] or [1, total, H, K]
  TensorRef k;        // bf16, as q
  TensorRef v;        // bf16 [N, t, H, V] or [1, total, H, V]
  TensorRef g;        // bf16, as q: gate logits before activation
  TensorRef beta;     // bf16 [N, t, H] or [1, total, H]
  double scale = 0;   // query scale, usually K ** -0.5
  TensorRef out;      // bf16, as v: written
  TensorRef A_log;    // fp32 [H]
  TensorRef dt_bias;  // fp32 [H, K]
  double lower_bound = -5.0;   // in [-5, 0]
  TensorRef state;             // bf16 or fp32 [P, H, V, K]: the pool, read and updated in place
  TensorRef state_indices;     // int32 or int64 [N]: pool slot of each sequence; < 0 = padding row
  TensorRef cu_seqlens;        // optional, int32 or int64 [N + 1]: packed layout
};

// Problem sizes derived from validated decode parameters.
struct DecodeShape {
  int64_t num_sequences = 0;  // N
  int64_t tokens = 0;         // t (fixed layout); 0 with cu_seqlens
  int64_t total_tokens = 0;   // N * t, or the packed length
  int64_t heads = 0;          // H
  int64_t pool_size = 0;      // P
  bool varlen = false;
};

// Checks every precondition of `decode` that needs no device memory read and
// returns the sizes. Host state_indices / cu_seqlens contents are checked too
// (range, duplicates, 1..8 tokens per sequence). Throws Error naming the argument.
DecodeShape validate_decode(const DecodeParams& params);

// Bytes of workspace `decode` needs (0 for host tensors; a status word on CUDA).
// Calls validate_decode.
size_t decode_workspace_size(const DecodeParams& params);

// One decode step. For each sequence n with slot s = state_indices[n] >= 0:
// runs its tokens through the recurrence starting from state[s], writes their
// outputs to `out` and the new state back to state[s]. A sequence with a
// negative index is a padding row: its outputs are written as zeros and no
// slot is touched. Slots not named are never read or written. Duplicate
// non-negative indices are an error.
//
// Host tensors: computed in float64 (the reference path) and stored in the
// caller's dtypes. CUDA tensors: asynchronous on `stream`, no host sync, no
// allocation (CUDA-graph capturable). Contents of CUDA `state_indices` and
// `cu_seqlens` cannot be checked on the host without a sync, so they are
// checked on the device (by a separate kernel, or, for calls of at most 64
// sequences, by each CTA of the decode kernel itself) and the status word at
// the start of the workspace says what was found (kDecodeStatus* bits below;
// written on either path, stream-ordered after the call):
//  * bad cu_seqlens or duplicate slots: nothing is computed, every element of
//    `out` is NaN and no slot is written;
//  * an index >= P: that sequence's outputs are NaN and no slot is touched
//    for it; the other sequences are computed normally.
// A refused call (Error thrown) writes nothing.
void decode(const DecodeParams& params, void* workspace, size_t workspace_bytes,
            cudaStream_t stream = nullptr);

// Bits of the decode status word (CUDA; 0 = all good).
inline constexpr int32_t kDecodeStatusBadCuSeqlens = 1;     // whole call poisoned
inline constexpr int32_t kDecodeStatusDuplicateIndex = 2;   // whole call poisoned
inline constexpr int32_t kDecodeStatusIndexOutOfRange = 4;  // those sequences poisoned

// The float64 oracle of `decode` on host tensors. Same arguments and checks,
// except that `out` may also be fp32 or fp64 and `state` bf16, fp32 or fp64
// (so the result need not be rounded), and no alignment is required.
void reference_decode(const DecodeParams& params);

}  // namespace flash_kda
