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

// Maps blockIdx to a work item; false when the CTA has nothing to do (bad
// cu_seqlens flagged by the device check: then no CTA writes anything).
__device__ __forceinline__ bool make_work_item(const FwdKernelParams& p, WorkItem& w) {
  if (p.status != nullptr && *p.status != 0) return false;
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
