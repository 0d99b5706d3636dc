// Profiling builds only (CMake -DFLASH_KDA_TIMELINE=ON): per-CTA timestamps
// of the forward kernel's phases, to see where a work item's time goes when
// every SM is busy (bench/probe_timeline.py reads them). The record replaces
// the first 128 bytes of the CTA's first final-state row (fp32 final states
// only), so the results of such a build are wrong by design: never ship one.
// In normal builds every mark compiles to nothing.
#pragma once

#include <cstdint>

namespace flash_kda::sm90 {

// clock64 marks (SM cycles since kernel entry), in record order after the
// three header words (SM id, globaltimer at entry, globaltimer at the end).
enum TimelineMark : int {
  kTlSetup = 0,      // recurrence warp 0: work item decoded, barriers initialised
  kTlStateIssued,    // recurrence warp 0: its initial-state loads issued
  kTlPrepLoaded0,    // prep pair 0: chunk 0's q, k, g landed
  kTlPrepHanded0,    // prep pair 0: chunk 0 handed to the recurrence
  kTlChunk0,         // recurrence warp 0: chunk 0 done (waited for the state and chunk 0)
  kTlChunk1,         // recurrence warp 0: chunk 1 done
  kTlLastChunk,      // recurrence warp 0: every chunk done
  kTlStored,         // recurrence warp 0: final-state stores issued
  kTlCkptBegin,      // checkpoint kernels, recurrence warp 0: before the first checkpoint's stores
  kTlCkptEnd,        //   after them (issued)
  kTlCkptNext,       //   the chunk after that checkpoint done
  kTlMarks
};

#ifdef FLASH_KDA_TIMELINE
inline constexpr bool kTimeline = true;
__shared__ unsigned long long tl_entry_clock;
__shared__ unsigned long long tl_entry_global;
__shared__ unsigned long long tl_marks[kTlMarks];

__device__ __forceinline__ unsigned long long tl_globaltimer() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
// Thread 0 at kernel entry.
__device__ __forceinline__ void tl_entry() {
  if (threadIdx.x == 0) {
    tl_entry_clock = clock64();
    tl_entry_global = tl_globaltimer();
  }
}
// Lane 0 of the calling warp records `mark`.
__device__ __forceinline__ void tl_mark(int lane, TimelineMark mark) {
  if (lane == 0) tl_marks[mark] = clock64();
}
static_assert(3 + kTlMarks <= 16, "the record fits in 128 bytes");
// Lane 0 of recurrence warp 0 writes the record over row_start[0..31]
// (fp32 row of the final state) after its own state stores.
__device__ __forceinline__ void tl_write(int lane, float* row_start) {
  __syncwarp();
  if (lane != 0) return;
  unsigned smid;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
  auto* rec = reinterpret_cast<unsigned long long*>(row_start);
  rec[0] = smid;
  rec[1] = tl_entry_global;
  rec[2] = tl_globaltimer();
  for (int m = 0; m < kTlMarks; ++m) rec[3 + m] = tl_marks[m] - tl_entry_clock;
}
#else
inline constexpr bool kTimeline = false;
__device__ __forceinline__ void tl_entry() {}
__device__ __forceinline__ void tl_mark(int, TimelineMark) {}
__device__ __forceinline__ void tl_write(int, float*) {}
#endif

}  // namespace flash_kda::sm90
