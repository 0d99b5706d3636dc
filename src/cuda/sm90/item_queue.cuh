// Persistent CTAs: the queue of a CTA's work items.
//
// The grid has at most one CTA per SM, and each CTA runs work items (see
// work_item.cuh) one after another, so that the prep pairs run into the next
// item's chunks while the recurrence warps finish the current one: a one-item
// CTA paid the whole fill (setup, chunk 0's loads and prep, ~15k cycles of a
// 512-token item's ~91k) on the recurrence's critical path.
//
// Item 0 of CTA b is item b. Item k > 0 is claimed by one thread (the
// fetcher: lane 0 of prep pair 0, half 0) when it needs it, i.e. when pair 0
// is done with item k - 1 (a few chunks before the recurrence is): from a
// device counter when the argument check ran (it zeroes the counter; varlen
// items then go to whichever CTA frees up first, longest sequences first, as
// the hardware's block dispatch did; claimed one item ahead, a CTA starting a
// long item took another at once: H64 varlen6 +7%), else statically
// b + k·G (fixed length: equal items). The items pass through a ring of
// kItemRing entries with full / empty mbarriers; every warp takes every item
// in order (an item index >= items ends the sequence).
#pragma once

#include <cstdint>

#include "cuda/sm90/device_utils.cuh"
#include "cuda/sm90/fwd_params.h"

namespace flash_kda::sm90 {

// Entries: the prep runs at most 4 chunks ahead of the recurrence, so with
// items of at least one chunk the fetcher never waits on a slot; with empty
// items it may wait for the recurrence warps to catch up (never a deadlock:
// they only need chunks of earlier items, all fetched).
inline constexpr int kItemRing = 8;

struct ItemQueueStorage {
  unsigned long long item[kItemRing];
  uint64_t full[kItemRing];   // one arrival: the fetcher wrote item[k % kItemRing]
  uint64_t empty[kItemRing];  // one arrival per warp: it has read the entry
};

// Thread 0, before the block-wide barrier that follows barrier init.
__device__ __forceinline__ void init_item_queue(ItemQueueStorage& q, int warps) {
  for (int i = 0; i < kItemRing; ++i) {
    Barrier::init(&q.full[i], 1);
    Barrier::init(&q.empty[i], warps);
  }
}

// The calling warp's item k (all lanes take it), or -1 when the queue has
// ended (after `items`); the fetcher first claims and publishes it (the grid
// is one-dimensional).
__device__ __forceinline__ int64_t take_item(ItemQueueStorage& q, const FwdKernelParams& p, int64_t items, int k,
                                             int lane, bool fetcher) {
  // The entries are read and written with shared-memory atomics: the
  // mbarriers order them (arrive releases, the wait acquires), but
  // compute-sanitizer's racecheck does not credit mbarriers for plain
  // accesses; lane 0 reads for its warp.
  const int slot = k % kItemRing;
  if (fetcher && lane == 0) {
    if (k >= kItemRing) wait_barrier(&q.empty[slot], uint32_t(k / kItemRing - 1) & 1u);
    const unsigned long long claimed = k == 0 ? blockIdx.x
                                       : p.item_counter != nullptr
                                           ? gridDim.x + atomicAdd(p.item_counter, 1ull)
                                           : blockIdx.x + static_cast<unsigned long long>(k) * gridDim.x;
    atomicExch(&q.item[slot], claimed);
    Barrier::arrive(&q.full[slot]);
  }
  int64_t item = 0;
  if (lane == 0) {
    wait_barrier(&q.full[slot], uint32_t(k / kItemRing) & 1u);
    item = int64_t(atomicAdd(&q.item[slot], 0ull));
    Barrier::arrive(&q.empty[slot]);
  }
  item = __shfl_sync(0xffffffffu, item, 0);
  return item < items ? item : -1;
}

}  // namespace flash_kda::sm90
