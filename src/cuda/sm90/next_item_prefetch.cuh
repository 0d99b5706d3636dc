// The first rows of the next work item, asked into L2 by a CTA near its end.
//
// With more CTAs than SMs, a CTA that finishes frees its SM for the next CTA
// in launch order, roughly `next_item_stride` (the SM count) positions on.
// That CTA's first loads (its first chunks' q, k, g, v and its initial
// state) are the start of its fill, the part of a short work item nothing
// overlaps (NOTES, session 11: ~1.9k cycles from the first TMA to its rows);
// asked into L2 a few chunks before this CTA ends, they land from L2 instead
// of HBM. Hints only: a guess that misses costs L2 traffic, not bytes of HBM
// that would not be read anyway, and nothing waits for them.
#pragma once

#include "cuda/sm90/device_utils.cuh"
#include "cuda/sm90/shared_storage.cuh"
#include "cuda/sm90/work_item.cuh"

namespace flash_kda::sm90 {

// The work item of launch position `cta` as far as its first loads need it;
// false when it cannot be told without the full decode (segments, varlen
// without the device check's records) or is out of range. 32-bit unsigned
// arithmetic (the host enables the prefetch only for grids below 2^31 CTAs):
// 64-bit divisions are calls, and their ABI made ptxas spill in the chunk loops.
__device__ __forceinline__ bool peek_work_item(const FwdKernelParams& p, uint32_t cta, WorkItem& w) {
  if (p.segments > 0) return false;
  const uint32_t vblocks = uint32_t(p.num_vblocks);
  if (p.sequence_runs != nullptr) {  // make_work_item's varlen decode
    const uint32_t per_sequence = uint32_t(p.heads) * vblocks;
    const SequenceRun run = p.sequence_runs[cta / per_sequence];
    const uint32_t rest = cta % per_sequence;
    w.sequence = run.sequence;
    w.head = int(rest / vblocks);
    w.vblock = int(rest % vblocks);
    w.row0 = run.begin;
    w.length = run.length;
  } else if (p.cu_seqlens != nullptr) {
    return false;
  } else {  // fixed length: blockIdx.x = (sequence, value block), blockIdx.y = head
    const uint32_t x = cta % gridDim.x;
    w.head = int(cta / gridDim.x);
    w.vblock = int(x % vblocks);
    w.sequence = int(x / vblocks);
    w.row0 = int64_t(w.sequence) * p.seq_len;
    w.length = p.seq_len;
  }
  return w.sequence >= 0 && w.sequence < p.num_sequences && w.row0 >= 0 && w.length > 0 &&
         w.row0 + w.length <= p.total_rows;
}

// One thread: asks L2 for the boxes the next CTA's prep pairs load first (up
// to kStages chunks) and its initial-state rows. kStageG: bf16 gates come
// through the g tensor map (as in ChunkPrep::load_qkg).
template <int kBV>
__device__ __forceinline__ void prefetch_next_item(const FwdKernelParams& p, bool stage_g) {
  const uint32_t ctas = gridDim.x * gridDim.y;
  const uint32_t next = blockIdx.y * gridDim.x + blockIdx.x + uint32_t(p.next_item_stride);
  WorkItem w{};
  if (p.next_item_stride <= 0 || next >= ctas || !peek_work_item(p, next, w)) return;

  constexpr int kQkgBox = SharedStorage<kBV>::kRawQkgBoxCols, kVBox = SharedStorage<kBV>::kRawVBoxCols;
  const int chunks = w.length >= kStages * kChunk ? kStages : int((w.length + kChunk - 1) / kChunk);
  for (int c = 0; c < chunks; ++c) {
    const int row = int(w.row0) + c * kChunk;
#pragma unroll
    for (int b = 0; b < kDim / kQkgBox; ++b) {
      tma_prefetch_l2_3d(&p.tmap_q, b * kQkgBox, w.head, row);
      tma_prefetch_l2_3d(&p.tmap_k, b * kQkgBox, w.head, row);
      if (stage_g) tma_prefetch_l2_3d(&p.tmap_g, b * kQkgBox, w.head, row);
    }
    if (!p.zero_values) {
#pragma unroll
      for (int b = 0; b < kBV / kVBox; ++b) tma_prefetch_l2_3d(&p.tmap_v, w.vblock * kBV + b * kVBox, w.head, row);
    }
  }

  // The initial state: slot as in make_work_item (its bounds included).
  int64_t slot = w.sequence;
  if (p.state_indices != nullptr)
    slot = load_index(p.state_indices, p.int32_indices & kStateIndicesInt32, w.sequence);
  if (p.zero_start != nullptr && p.zero_start[w.sequence] != 0) return;
  w.read_slot = p.initial_kind == StateKind::kNone ? -1 : slot;
  w.segment = -1;
  const void* src;
  StateKind kind;
  if (slot < 0 || slot >= p.initial_slots || !initial_state_source(p, w, src, kind)) return;
  const size_t bytes = kind == StateKind::kFloat32 ? sizeof(float) : sizeof(bf16);
  prefetch_l2_bulk(static_cast<const char*>(src) + first_state_row<kBV>(p, w, slot) * kDim * bytes,
                   uint32_t(kBV * kDim * bytes));
}

}  // namespace flash_kda::sm90
