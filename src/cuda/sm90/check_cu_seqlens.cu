// Device-side checks of index contents (cu_seqlens, state_indices,
// final_state_indices, checkpoint_offsets), so `fwd` needs no host sync: the
// forward kernel reads the status word and, when it is set, computes nothing
// and NaN-fills the outputs (see kStatusBadCuSeqlens and the other bits).
//
// One CTA: it zeroes the slot bitmaps in the workspace, marks every used
// slot with atomicOr (a bit already set = a duplicate), then, for in-place
// pools with separate final slots, tests each written slot against the read
// bitmap. O(N + P / 32) work; a few microseconds for serving-sized batches.
// Varlen calls also get the longest-first order of their sequences here.
#include <cub/block/block_scan.cuh>

#include "cuda/sm90/fwd_launch.h"
#include "cuda/sm90/work_item.cuh"

namespace flash_kda::sm90 {
namespace {

constexpr int kThreads = 1024;

// Marks slot s in `bitmap`; true when it was already marked.
__device__ bool mark(uint32_t* bitmap, int64_t s) {
  const uint32_t bit = 1u << (s & 31);
  return (atomicOr(&bitmap[s >> 5], bit) & bit) != 0;
}

// The sequences by chunk count, longest first, into runs[N] (with their
// rows, see SequenceRun): the forward's
// CTAs take their work in this order, so no long sequence starts last and
// sets the call's time alone (longest-processing-time-first scheduling).
// Counting sort; counts from kOrderBuckets - 1 chunks up share the first
// bucket. The order within a bucket follows the atomics: it only decides
// which SM runs a work item, never a result.
constexpr int kOrderBuckets = 4096;
static_assert(kOrderBuckets % kThreads == 0);

__device__ void order_longest_first(const FwdKernelParams& p, SequenceRun* runs) {
  using Scan = cub::BlockScan<int, kThreads>;
  __shared__ int start[kOrderBuckets];
  __shared__ typename Scan::TempStorage scan;
  const bool cu32 = p.int32_indices & kCuSeqlensInt32;
  const int N = p.num_sequences;
  auto bucket = [&](int n) {
    const int64_t length = load_index(p.cu_seqlens, cu32, n + 1) - load_index(p.cu_seqlens, cu32, n);
    const int64_t chunks = length > 0 ? (length + kChunk - 1) / kChunk : 0;
    return kOrderBuckets - 1 - int(chunks < kOrderBuckets - 1 ? chunks : kOrderBuckets - 1);
  };
  for (int b = threadIdx.x; b < kOrderBuckets; b += kThreads) start[b] = 0;
  __syncthreads();
  for (int n = threadIdx.x; n < N; n += kThreads) atomicAdd(&start[bucket(n)], 1);
  __syncthreads();
  constexpr int kPer = kOrderBuckets / kThreads;  // consecutive buckets per thread
  int count[kPer], sum = 0;
#pragma unroll
  for (int i = 0; i < kPer; ++i) sum += count[i] = start[threadIdx.x * kPer + i];
  int offset;
  Scan(scan).ExclusiveSum(sum, offset);
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    start[threadIdx.x * kPer + i] = offset;
    offset += count[i];
  }
  __syncthreads();
  for (int n = threadIdx.x; n < N; n += kThreads) {
    // (lengths fit in int32 whenever the status is clear: total_rows < 2^31)
    const int64_t begin = load_index(p.cu_seqlens, cu32, n);
    const int64_t length = load_index(p.cu_seqlens, cu32, n + 1) - begin;
    runs[atomicAdd(&start[bucket(n)], 1)] = SequenceRun{begin, int32_t(length), n};
  }
}

__global__ void __launch_bounds__(kThreads) check_arguments_kernel(const FwdKernelParams p, const DeviceCheck c) {
  __shared__ int bad;
  if (threadIdx.x == 0) bad = 0;
  for (int64_t i = threadIdx.x; i < c.read_words + c.write_words; i += kThreads) c.bitmaps[i] = 0;
  __syncthreads();
  int mine = 0;
  const int64_t N = p.num_sequences;
  const bool cu32 = p.int32_indices & kCuSeqlensInt32;
  if (p.cu_seqlens != nullptr) {
    for (int64_t i = threadIdx.x; i <= N; i += kThreads) {
      const int64_t here = load_index(p.cu_seqlens, cu32, i);
      const bool ok = (i == 0 ? here == 0 : here >= load_index(p.cu_seqlens, cu32, i - 1)) &&
                      (i != N || here == p.total_rows);
      if (!ok) mine |= kStatusBadCuSeqlens;
    }
  }
  uint32_t* read_bitmap = c.bitmaps;
  uint32_t* write_bitmap = c.bitmaps + c.read_words;
  if (p.state_indices != nullptr) {
    for (int64_t n = threadIdx.x; n < N; n += kThreads) {
      const int64_t s = load_index(p.state_indices, p.int32_indices & kStateIndicesInt32, n);
      if (s >= 0 && (s >= c.read_bound || mark(read_bitmap, s))) mine |= kStatusBadStateIndices;
    }
  }
  if (p.final_state_indices != nullptr) {
    for (int64_t n = threadIdx.x; n < N; n += kThreads) {
      const int64_t s = load_index(p.final_state_indices, p.int32_indices & kFinalStateIndicesInt32, n);
      if (s >= 0 && (s >= c.write_bound || mark(write_bitmap, s))) mine |= kStatusBadStateIndices;
    }
  }
  if (p.checkpoint_offsets != nullptr) {
    const bool o32 = p.int32_indices & kCheckpointOffsetsInt32;
    const int64_t interval = int64_t(p.checkpoint_chunks) * kChunk;
    for (int64_t n = threadIdx.x; n < N; n += kThreads) {
      const int64_t length = p.cu_seqlens != nullptr
                                 ? load_index(p.cu_seqlens, cu32, n + 1) - load_index(p.cu_seqlens, cu32, n)
                                 : p.seq_len;
      const int64_t first = load_index(p.checkpoint_offsets, o32, n);
      const int64_t count = load_index(p.checkpoint_offsets, o32, n + 1) - first;
      if ((n == 0 && first < 0) || count != length / interval ||
          (n == N - 1 && first + count > p.checkpoint_rows))
        mine |= kStatusBadCheckpointOffsets;
    }
  }
  __syncthreads();  // bitmaps complete (global atomics, visible to the block)
  if (c.in_place && p.final_state_indices != nullptr) {
    // A slot written by one sequence must not be read by another one.
    for (int64_t n = threadIdx.x; n < N; n += kThreads) {
      const int64_t w = load_index(p.final_state_indices, p.int32_indices & kFinalStateIndicesInt32, n);
      const int64_t r = load_index(p.state_indices, p.int32_indices & kStateIndicesInt32, n);
      if (w >= 0 && w != r && w < c.read_bound && (read_bitmap[w >> 5] >> (w & 31)) & 1u)
        mine |= kStatusBadStateIndices;
    }
  }
  if (mine) atomicOr(&bad, mine);
  __syncthreads();
  if (threadIdx.x == 0) *c.status = bad;
  if (c.runs != nullptr && p.cu_seqlens != nullptr) order_longest_first(p, c.runs);
}

}  // namespace

cudaError_t launch_check_arguments(const FwdKernelParams& params, const DeviceCheck& check, cudaStream_t stream) {
  check_arguments_kernel<<<1, kThreads, 0, stream>>>(params, check);
  return cudaGetLastError();
}

}  // namespace flash_kda::sm90
