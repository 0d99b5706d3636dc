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

  // Number of real tokens in chunk c (1..16).
  __device__ __forceinline__ int valid_rows(int c) const {
    const int64_t left = length - int64_t(c) * kChunk;
    return left >= kChunk ? kChunk : int(left);
  }
  // Element offset of (token row r, this head, channel 0) in a [rows, H, 128] tensor.
  __device__ __forceinline__ int64_t token_offset(const FwdKernelParams& p, int64_t row) const {
    return (row * p.heads + head) * int64_t(kHeadDim);
  }
};

// When the device check found cu_seqlens invalid, no result is computed and
// the outputs are filled with NaN instead, so a caller who could not be told
// synchronously never receives a plausible-looking tensor. All CTAs share the
// `out` fill (grid-stride); each fills its own rows of final_state.
__device__ __forceinline__ void poison_outputs(const FwdKernelParams& p) {
  const uint4 nan4 = make_uint4(0x7fc07fc0u, 0x7fc07fc0u, 0x7fc07fc0u, 0x7fc07fc0u);
  const int64_t ctas = int64_t(gridDim.x) * gridDim.y;
  const int64_t cta = int64_t(blockIdx.y) * gridDim.x + blockIdx.x;
  const int64_t out_vec = p.total_rows * p.heads * kHeadDim / 8;  // 16-byte vectors
  for (int64_t i = cta * blockDim.x + threadIdx.x; i < out_vec; i += ctas * blockDim.x)
    reinterpret_cast<uint4*>(p.out)[i] = nan4;
  if (p.final_kind == StateKind::kNone) return;
  const int vblock = int(blockIdx.x % unsigned(p.num_vblocks));
  const int64_t sequence = blockIdx.x / unsigned(p.num_vblocks);
  const int rows = kHeadDim / p.num_vblocks;
  const int64_t first = ((sequence * p.heads + blockIdx.y) * kHeadDim + int64_t(vblock) * rows) * kHeadDim;
  const int bytes_per = p.final_kind == StateKind::kFloat32 ? 4 : 2;
  const int64_t vecs = int64_t(rows) * kHeadDim * bytes_per / 16;
  const uint4 fnan4 = p.final_kind == StateKind::kFloat32
                          ? make_uint4(0x7fc00000u, 0x7fc00000u, 0x7fc00000u, 0x7fc00000u) : nan4;
  uint4* dst = reinterpret_cast<uint4*>(static_cast<char*>(p.final_state) + first * bytes_per);
  for (int64_t i = threadIdx.x; i < vecs; i += blockDim.x) dst[i] = fnan4;
}

// Maps blockIdx to a work item; false when the CTA has nothing to compute
// (invalid cu_seqlens: then it NaN-fills its share of the outputs).
__device__ __forceinline__ bool make_work_item(const FwdKernelParams& p, WorkItem& w) {
  if (p.status != nullptr && *p.status != 0) {
    poison_outputs(p);
    return false;
  }
  w.vblock = int(blockIdx.x % unsigned(p.num_vblocks));
  w.sequence = int(blockIdx.x / unsigned(p.num_vblocks));
  w.head = int(blockIdx.y);
  if (p.cu_seqlens != nullptr) {
    const int64_t begin = p.cu_seqlens[w.sequence];
    const int64_t end = p.cu_seqlens[w.sequence + 1];
    if (begin < 0 || end < begin || end > p.total_rows) return false;  // never read out of bounds
    w.row0 = begin;
    w.length = end - begin;
  } else {
    w.row0 = int64_t(w.sequence) * p.seq_len;
    w.length = p.seq_len;
  }
  w.num_chunks = int((w.length + kChunk - 1) / kChunk);
  return true;
}

}  // namespace flash_kda::sm90
