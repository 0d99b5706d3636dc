// A CTA's work: one or more (sequence, head, value block) triples, each
// with its token range, decoded once into a table in shared memory.
#pragma once

#include "common/constants.h"
#include "cuda/sm90/fwd_params.h"

namespace flash_kda::sm90 {

struct WorkItem {
  int64_t row0;     // first token row (in the [B*T] row space)
  int64_t length;   // tokens of the sequence
  int num_chunks;   // ceil(length / 16); 0 when not active
  int stream_base;  // this item's first chunk in the CTA's chunk stream (the chunks of its items in order)
  int sequence;
  int head;
  int vblock;
  bool active;              // computed: initial state read, chunks run, final state written
  bool padding;             // padding sequence (negative state index): its out rows are zeroed
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

// Work items a CTA can hold. A persistent grid (FwdKernelParams::persistent)
// has at least ceil(items / kMaxWorkItems) CTAs, so none is given more.
inline constexpr int kMaxWorkItems = 64;

// Work item k of this CTA: the launch's item index, or -1 past the end.
// One CTA per item: the CTA's own index. A persistent grid of G CTAs deals
// the items in rounds of G, every other round in reverse, so that with the
// items longest first (varlen) no CTA takes the longest of every round.
__device__ __forceinline__ int64_t work_item_index(int64_t items, int k) {
  const int64_t ctas = int64_t(gridDim.x) * gridDim.y;
  const int64_t cta = int64_t(blockIdx.y) * gridDim.x + blockIdx.x;
  const int64_t idx = int64_t(k) * ctas + (k % 2 == 0 ? cta : ctas - 1 - cta);
  return idx < items ? idx : -1;
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
// never receives a plausible-looking tensor. All CTAs share the fills
// (grid-stride). A state pool (state_indices) is left untouched: its other
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
  const bool fp32 = p.final_kind == StateKind::kFloat32;
  const int64_t sequences = min(int64_t(p.num_sequences), p.final_slots);
  fill_vectors(p.final_state, sequences * p.heads * kHeadDim * kHeadDim / (fp32 ? 4 : 8), fp32 ? fnan4 : nan4,
               first, step);
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

// What make_work_item found.
enum class WorkStatus { kCompute, kPadding, kSkip };

// Decodes the launch's work item `idx`: kCompute, or kPadding (a padding
// sequence: its out rows of this value block are to be zeroed), or kSkip
// (nothing to do; only after a failed or skipped device check).
template <int kBV>
__device__ __forceinline__ WorkStatus make_work_item(const FwdKernelParams& p, int64_t idx, WorkItem& w) {
  w.active = false;
  w.padding = false;
  w.num_chunks = 0;
  const int64_t per_head = int64_t(p.num_sequences) * p.num_vblocks;  // the old grid's x extent
  if (p.sequence_order != nullptr) {
    // Items in order take (sequence rank, head, value block), the longest
    // sequences first (the device check's order).
    const int64_t per_sequence = int64_t(p.heads) * p.num_vblocks;
    const int rest = int(idx % per_sequence);
    w.sequence = p.sequence_order[idx / per_sequence];
    w.head = rest / p.num_vblocks;
    w.vblock = rest % p.num_vblocks;
    if (w.sequence < 0 || w.sequence >= p.num_sequences) return WorkStatus::kSkip;  // (a permutation by construction)
  } else {
    const int64_t x = idx % per_head;
    w.vblock = int(x % p.num_vblocks);
    w.sequence = int(x / p.num_vblocks);
    w.head = int(idx / per_head);
  }
  int64_t batch = w.sequence, first_token = 0;  // of beta[b, t, h]
  int segment = -1;
  if (p.cu_seqlens != nullptr) {
    const bool i32 = p.int32_indices & kCuSeqlensInt32;
    const int64_t begin = load_index(p.cu_seqlens, i32, w.sequence);
    const int64_t end = load_index(p.cu_seqlens, i32, w.sequence + 1);
    if (begin < 0 || end < begin || end > p.total_rows) return WorkStatus::kSkip;  // never read out of bounds
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
    if (w.length <= 0) return WorkStatus::kSkip;  // (the plan never makes empty segments)
  } else {
    w.row0 = int64_t(w.sequence) * p.seq_len;
    w.length = p.seq_len;
  }
  w.beta_base = batch * p.beta_stride_b + first_token * p.beta_stride_t + int64_t(w.head) * p.beta_stride_h;

  // State slots (the device check has validated them; the bounds tests
  // below only keep a skipped check from turning into a wild access).
  int64_t slot = w.sequence;
  if (p.state_indices != nullptr) {
    slot = load_index(p.state_indices, p.int32_indices & kStateIndicesInt32, w.sequence);
    if (slot < 0) {
      w.padding = true;
      return WorkStatus::kPadding;
    }
  }
  w.read_slot = p.initial_kind == StateKind::kNone ? -1 : slot;
  if (p.zero_start != nullptr && p.zero_start[w.sequence] != 0) w.read_slot = -1;
  w.write_slot = p.final_kind == StateKind::kNone ? -1 : slot;
  if (p.final_state_indices != nullptr)
    w.write_slot = load_index(p.final_state_indices, p.int32_indices & kFinalStateIndicesInt32, w.sequence);
  if (w.read_slot >= p.initial_slots || w.write_slot >= p.final_slots) return WorkStatus::kSkip;
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
    if (w.checkpoint_row0 < 0 || w.checkpoint_row0 + count > p.checkpoint_rows) return WorkStatus::kSkip;
  }
  w.active = true;
  w.num_chunks = int((w.length + kChunk - 1) / kChunk);
  return WorkStatus::kCompute;
}

// The CTA's work items in shared memory, with their chunks numbered as one
// stream: the prep pairs run on into the next item's chunks while the
// recurrence finishes the current one, so a CTA pays the pipeline fill once,
// not once per item.
struct WorkTable {
  WorkItem items[kMaxWorkItems];
  int count;         // items of this CTA (active or not)
  int total_chunks;  // chunks of all of them: the length of the stream
  // The item holding stream chunk g, searching forward from item k (the
  // stream only moves forward; items without chunks are passed over).
  __device__ __forceinline__ int item_at(int g, int k) const {
    while (g >= items[k].stream_base + items[k].num_chunks) ++k;
    return k;
  }
};

// All threads of the CTA: decodes this CTA's items into `t` (one thread per
// item), zeroes the out rows of padding items, numbers the chunk stream.
// False when there is nothing to compute (invalid device arguments: then the
// outputs are NaN-filled instead).
template <int kBV>
__device__ bool build_work_table(const FwdKernelParams& p, WorkTable& t) {
  if (p.status != nullptr && *p.status != 0) {
    poison_outputs(p);
    return false;
  }
  const int64_t items = int64_t(p.num_sequences) * p.heads * p.num_vblocks;
  // The launcher sizes a persistent grid so that no CTA gets more items.
  if (threadIdx.x == 0 && work_item_index(items, kMaxWorkItems) >= 0) __trap();
  const int k = int(threadIdx.x);
  const int64_t idx = k < kMaxWorkItems ? work_item_index(items, k) : -1;
  if (idx >= 0) make_work_item<kBV>(p, idx, t.items[k]);
  const int count = __syncthreads_count(idx >= 0);  // (items 0 .. count - 1: a prefix)
  for (int j = 0; j < count; ++j)
    if (t.items[j].padding) zero_padding_rows<kBV>(p, t.items[j]);
  if (threadIdx.x < 32) {  // stream bases: a warp scan over entries lane and lane + 32
    static_assert(kMaxWorkItems == 64);
    const int lane = int(threadIdx.x);
    const int n0 = lane < count ? t.items[lane].num_chunks : 0;
    const int n1 = lane + 32 < count ? t.items[lane + 32].num_chunks : 0;
    int x0 = n0, x1 = n1;
#pragma unroll
    for (int d = 1; d < 32; d *= 2) {
      const int y0 = __shfl_up_sync(0xffffffffu, x0, d), y1 = __shfl_up_sync(0xffffffffu, x1, d);
      if (lane >= d) {
        x0 += y0;
        x1 += y1;
      }
    }
    const int total0 = __shfl_sync(0xffffffffu, x0, 31);
    const int total = total0 + __shfl_sync(0xffffffffu, x1, 31);
    if (lane < count) t.items[lane].stream_base = x0 - n0;
    if (lane + 32 < count) t.items[lane + 32].stream_base = total0 + x1 - n1;
    if (lane == 0) {
      t.count = count;
      t.total_chunks = total;
    }
  }
  __syncthreads();
  return true;
}

}  // namespace flash_kda::sm90
