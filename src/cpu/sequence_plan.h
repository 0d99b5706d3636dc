// What one sequence of a `fwd` call reads and writes, for the CPU backends:
// its token range, the state-pool slots (state_indices, final_state_indices,
// zero_start), its checkpoint rows, and beta's strided addressing.
#pragma once

#include <cstdint>

#include "cpu/bf16.h"
#include "flash_kda/flash_kda.h"

namespace flash_kda::cpu {

struct SequencePlan {
  int64_t begin = 0, end = 0;    // tokens [begin, end) of the flattened [B*T] axis
  bool padding = false;          // negative state_indices[n]: out rows zeroed, nothing else
  int64_t read_slot = -1;        // row of initial_state's first dim; -1: start from zeros
  int64_t write_slot = -1;       // row of final_state's first dim; -1: not written
  int64_t checkpoint_row0 = -1;  // row of checkpoints for the first checkpoint; -1: none
};

inline SequencePlan plan_sequence(const FwdParams& p, const FwdShape& shape, int64_t n) {
  SequencePlan s;
  // Row b of a fixed batch starts at b*T; with cu_seqlens (B == 1)
  // sequence n is tokens cu[n]..cu[n+1].
  s.begin = shape.varlen ? load_index(p.cu_seqlens, n) : n * shape.tokens;
  s.end = shape.varlen ? load_index(p.cu_seqlens, n + 1) : s.begin + shape.tokens;
  const int64_t slot = p.state_indices.present() ? load_index(p.state_indices, n) : n;
  if (slot < 0) {
    s.padding = true;
    return s;
  }
  const bool zero = p.zero_start.present() && load_index(p.zero_start, n) != 0;
  if (p.initial_state.present() && !zero) s.read_slot = slot;
  if (p.final_state.present())
    s.write_slot = p.final_state_indices.present() ? load_index(p.final_state_indices, n) : slot;
  if (p.checkpoints.present()) s.checkpoint_row0 = load_index(p.checkpoint_offsets, n);
  return s;
}

// Element offset of beta[b, t, h] for flattened token row `row` (any strides).
inline int64_t beta_offset(const TensorRef& beta, int64_t T, int64_t row, int64_t h) {
  const int64_t b = T > 0 ? row / T : 0, t = T > 0 ? row % T : 0;
  return b * beta.strides[0] + t * beta.strides[1] + h * beta.strides[2];
}

}  // namespace flash_kda::cpu
