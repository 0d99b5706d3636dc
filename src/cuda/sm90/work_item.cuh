// One CTA's work: a (sequence, head, value block) triple and its token range.
#pragma once

#include "common/constants.h"
#include "cuda/sm90/fwd_params.h"

namespace flash_kda::sm90 {

struct WorkItem {
  int64_t row0;     // first token row (in the [B*T] row space)
  int64_t length;   // tokens of the sequence
  int num_chunks;   // ceil(length / 16)
  int sequence;
  int head;
  int vblock;
  int64_t read_slot;        // row of initial_state's first dim; -1: start from zeros
  int64_t write_slot;       // row of final_state's first dim; -1: not written
  int segment;              // context parallelism: this segment of the sequence (-1: off).
                            // With segment_initial / segment_final set, read_slot /
                            // write_slot index them instead of initial_state / final_state.
  int64_t checkpoint_row0;  // checkpoints row of this sequence's first checkpoint
  int64_t beta_base;        // element offset of beta[b, t of row0, head]

  // Number of real tokens in chunk c (1..16).
  __device__ __forceinline__ int valid_rows(int c) const {
    const int64_t left = length - int64_t(c) * kChunk;
    return left >= kChunk ? kChunk : int(left);
  }
  // Element offset in beta of token `t` (0-based within the sequence).
  __device__ __forceinline__ int64_t beta_offset(const FwdKernelParams& p, int64_t t) const {
    return beta_base + t * p.beta_stride_t;
  }
  // Element offset of (token row r, this head, channel 0) in a [rows, H, 128] tensor.
  __device__ __forceinline__ int64_t token_offset(const FwdKernelParams& p, int64_t row) const {
    return (row * p.heads + head) * int64_t(kHeadDim);
  }
};

// Row of state[slot] (a [*, H, 128, 128] tensor) where this CTA's kBV rows
// (one value block of its head) begin; they are contiguous.
template <int kBV>
__device__ __forceinline__ int64_t first_state_row(const FwdKernelParams& p, const WorkItem& w, int64_t slot) {
  return (slot * p.heads + w.head) * kHeadDim + int64_t(w.vblock) * kBV;
}

// Where the CTA's initial state is read from (tensor and dtype); false when
// it starts from zeros or, in a transition run, from the identity.
__device__ __forceinline__ bool initial_state_source(const FwdKernelParams& p, const WorkItem& w, const void*& src,
                                                     StateKind& kind) {
  if (p.identity_start || w.read_slot < 0) return false;
  const bool from_segment = w.segment >= 0 && p.segment_initial != nullptr;
  src = from_segment ? p.segment_initial : p.initial_state;
  kind = from_segment ? StateKind::kFloat32 : p.initial_kind;
  return true;
}

// Entry i of an int32 or int64 index array.
__device__ __forceinline__ int64_t load_index(const void* a, bool is_int32, int64_t i) {
  return is_int32 ? int64_t(static_cast<const int32_t*>(a)[i]) : static_cast<const int64_t*>(a)[i];
}

// Fills `count` 16-byte vectors at dst with `fill`, threads of the CTA strided by `step`.
__device__ __forceinline__ void fill_vectors(void* dst, int64_t count, uint4 fill, int64_t first, int64_t step) {
  for (int64_t i = first; i < count; i += step) reinterpret_cast<uint4*>(dst)[i] = fill;
}

// When the device check found cu_seqlens, the state indices or the
// checkpoint offsets invalid, no result is computed and the outputs are
// filled with NaN instead, so a caller who could not be told synchronously
// never receives a plausible-looking tensor. All CTAs share the `out` and
// `checkpoints` fills (grid-stride); each fills its own rows of a dense
// final_state. A state pool (state_indices) is left untouched: its other
// slots belong to other requests.
__device__ __forceinline__ void poison_outputs(const FwdKernelParams& p) {
  const uint4 nan4 = make_uint4(0x7fc07fc0u, 0x7fc07fc0u, 0x7fc07fc0u, 0x7fc07fc0u);
  const uint4 fnan4 = make_uint4(0x7fc00000u, 0x7fc00000u, 0x7fc00000u, 0x7fc00000u);
  const int64_t ctas = int64_t(gridDim.x) * gridDim.y;
  const int64_t cta = int64_t(blockIdx.y) * gridDim.x + blockIdx.x;
  const int64_t first = cta * blockDim.x + threadIdx.x, step = ctas * blockDim.x;
  fill_vectors(p.out, p.total_rows * p.heads * kHeadDim / 8, nan4, first, step);
  if (p.checkpoints != nullptr) {
    const bool fp32 = p.checkpoint_kind == StateKind::kFloat32;
    fill_vectors(p.checkpoints, p.checkpoint_rows * p.heads * kHeadDim * kHeadDim / (fp32 ? 4 : 8),
                 fp32 ? fnan4 : nan4, first, step);
  }
  if (p.final_kind == StateKind::kNone || p.state_indices != nullptr) return;
  const int vblock = int(blockIdx.x % unsigned(p.num_vblocks));
  const int64_t sequence = blockIdx.x / unsigned(p.num_vblocks);
  const int rows = kHeadDim / p.num_vblocks;
  const int64_t row0 = ((sequence * p.heads + blockIdx.y) * kHeadDim + int64_t(vblock) * rows) * kHeadDim;
  const int bytes_per = p.final_kind == StateKind::kFloat32 ? 4 : 2;
  const int64_t vecs = int64_t(rows) * kHeadDim * bytes_per / 16;
  fill_vectors(static_cast<char*>(p.final_state) + row0 * bytes_per, vecs,
               p.final_kind == StateKind::kFloat32 ? fnan4 : nan4, threadIdx.x, blockDim.x);
}

// A padding sequence (negative state index): its out rows of this CTA's
// value block become zeros; nothing else is read or written.
template <int kBV>
__device__ __forceinline__ void zero_padding_rows(const FwdKernelParams& p, const WorkItem& w) {
  constexpr int kVecsPerRow = kBV / 8;  // 16-byte vectors of bf16
  const int64_t count = w.length * kVecsPerRow;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const int64_t t = i / kVecsPerRow;
    const int64_t off = w.token_offset(p, w.row0 + t) + w.vblock * kBV + (i % kVecsPerRow) * 8;
    *reinterpret_cast<uint4*>(static_cast<uint16_t*>(p.out) + off) = make_uint4(0, 0, 0, 0);
  }
}

// Maps blockIdx to a work item; false when the CTA has nothing to compute
// (invalid device arguments: then it NaN-fills its share of the outputs;
// padding sequence: it zeroes its out rows).
template <int kBV>
__device__ __forceinline__ bool make_work_item(const FwdKernelParams& p, WorkItem& w) {
  // The status word and this CTA's sequence record (varlen) are loaded
  // together: one memory latency before the first TMA. The record's index is
  // in bounds whatever the status says, and its contents are used only after
  // the status check and their own range checks.
  const int32_t status = p.status != nullptr ? *p.status : 0;
  SequenceRun run{0, 0, 0};
  int64_t per_sequence = 0, cta = 0;
  if (p.sequence_runs != nullptr) {
    per_sequence = int64_t(p.heads) * p.num_vblocks;
    cta = int64_t(blockIdx.y) * gridDim.x + blockIdx.x;
    run = p.sequence_runs[cta / per_sequence];
  }
  if (status != 0) {
    poison_outputs(p);
    return false;
  }
  if (p.sequence_runs != nullptr) {
    // CTAs in launch order take (sequence rank, head, value block), the
    // longest sequences first (the device check's order).
    const int rest = int(cta % per_sequence);
    w.sequence = run.sequence;
    w.head = rest / p.num_vblocks;
    w.vblock = rest % p.num_vblocks;
    if (w.sequence < 0 || w.sequence >= p.num_sequences) return false;  // (a permutation by construction)
  } else {
    w.vblock = int(blockIdx.x % unsigned(p.num_vblocks));
    w.sequence = int(blockIdx.x / unsigned(p.num_vblocks));
    w.head = int(blockIdx.y);
  }
  int64_t batch = w.sequence, first_token = 0;  // of beta[b, t, h]
  int segment = -1;
  if (p.cu_seqlens != nullptr) {
    int64_t begin, end;
    if (p.sequence_runs != nullptr) {
      begin = run.begin;
      end = begin + run.length;
    } else {
      const bool i32 = p.int32_indices & kCuSeqlensInt32;
      begin = load_index(p.cu_seqlens, i32, w.sequence);
      end = load_index(p.cu_seqlens, i32, w.sequence + 1);
    }
    if (begin < 0 || end < begin || end > p.total_rows) return false;  // never read out of bounds
    w.row0 = begin;
    w.length = end - begin;
    batch = 0;
    first_token = begin;
  } else if (p.segments > 0) {  // context parallelism: one segment of a sequence
    const int local = w.sequence;
    w.sequence = local / p.segment_count;
    segment = p.segment_first + local % p.segment_count;
    batch = w.sequence;
    first_token = int64_t(segment) * p.segment_len;
    w.row0 = int64_t(w.sequence) * p.seq_len + first_token;
    w.length = min(p.segment_len, p.seq_len - first_token);
    if (w.length <= 0) return false;  // (the plan never makes empty segments)
  } else {
    w.row0 = int64_t(w.sequence) * p.seq_len;
    w.length = p.seq_len;
  }
  w.num_chunks = int((w.length + kChunk - 1) / kChunk);
  w.beta_base = batch * p.beta_stride_b + first_token * p.beta_stride_t + int64_t(w.head) * p.beta_stride_h;

  // State slots (the device check has validated them; the bounds tests
  // below only keep a skipped check from turning into a wild access).
  int64_t slot = w.sequence;
  if (p.state_indices != nullptr) {
    slot = load_index(p.state_indices, p.int32_indices & kStateIndicesInt32, w.sequence);
    if (slot < 0) {
      zero_padding_rows<kBV>(p, w);
      return false;
    }
  }
  w.read_slot = p.initial_kind == StateKind::kNone ? -1 : slot;
  if (p.zero_start != nullptr && p.zero_start[w.sequence] != 0) w.read_slot = -1;
  w.write_slot = p.final_kind == StateKind::kNone ? -1 : slot;
  if (p.final_state_indices != nullptr)
    w.write_slot = load_index(p.final_state_indices, p.int32_indices & kFinalStateIndicesInt32, w.sequence);
  if (w.read_slot >= p.initial_slots || w.write_slot >= p.final_slots) return false;
  w.segment = segment;
  if (segment >= 0) {  // (no pools, no checkpoints with segments)
    const int64_t base = int64_t(w.sequence) * p.segments;
    if (p.segment_initial != nullptr)
      w.read_slot = base + segment;
    else if (segment > 0)
      w.read_slot = -1;
    if (p.segment_final != nullptr) {
      w.write_slot = base + segment + 1;
    } else if (segment + 1 < p.segments) {
      w.write_slot = -1;  // only the last segment ends the sequence
    }
  }
  w.checkpoint_row0 = 0;
  if (p.checkpoint_chunks > 0) {
    w.checkpoint_row0 = load_index(p.checkpoint_offsets, p.int32_indices & kCheckpointOffsetsInt32, w.sequence);
    const int64_t count = w.length / (int64_t(p.checkpoint_chunks) * kChunk);
    if (w.checkpoint_row0 < 0 || w.checkpoint_row0 + count > p.checkpoint_rows) return false;
  }
  return true;
}

}  // namespace flash_kda::sm90
