// The SM90 forward kernel: one CTA per (sequence, head, value block); four
// prep warp pairs (producer) feed kBV/16 recurrence warps (consumer) through a
// 4-stage shared-memory pipeline (mbarriers for the copies and the stage
// release, named barriers for the hand-off of a prepped stage).
#pragma once

#include "cuda/sm90/chunk_prep.cuh"
#include "cuda/sm90/recurrence.cuh"

namespace flash_kda::sm90 {

template <int kBV>
struct FwdKernelTraits {
  static constexpr int kRecurrenceWarps = kBV / 16;
  static constexpr int kThreads = 32 * (kRecurrenceWarps + kPrepWarps);
  static constexpr size_t kSmemBytes = sizeof(SharedStorage<kBV>);
  // With 16 warps (kBV = 128) the entry cap is 128 registers. The split
  // used to be 120 / 136 (prep warps hold many per-token values); the
  // recurrence's wgmma batches need 128 (at 120 ptxas serialises them), and
  // the prep fits in 128 without spills. Kept as setmaxnreg regions: the same
  // 128 without them spills 12 bytes.
  static constexpr bool kRebalanceRegisters = kBV == 128;
  static constexpr int kRecurrenceRegs = 128;
  static constexpr int kPrepRegs = 128;
  // Unroll factor of the prep's L / Mqk k-loop (8 steps), picked per
  // instantiation by ptxas spills (at aaddab59, nvcc 13.0: 0 bytes for the
  // bv128 kernels except bv128 + checkpoints, 32 bytes at any factor). The
  // history of the choice is in bench/NOTES.md.
  template <bool kUnbounded, bool kCheckpoints>
  static constexpr int kLmqkUnroll = kBV == 128 && kUnbounded && kCheckpoints ? 2 : 4;
  static_assert(!kRebalanceRegisters ||
                (kRecurrenceRegs * kRecurrenceWarps + kPrepRegs * kPrepWarps) * 32 <= 65536);
};

// kUnbounded: the softplus / precomputed gates (GateKind), else FlashKDA's
// lower-bounded gate. kCheckpoints: the state is also stored every
// checkpoint_chunks chunks (params.checkpoint_chunks > 0).
template <int kBV, bool kUnbounded, bool kCheckpoints>
__global__ void __launch_bounds__(FwdKernelTraits<kBV>::kThreads, 1)
    kda_fwd_kernel(const __grid_constant__ FwdKernelParams params) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using Traits = FwdKernelTraits<kBV>;
  extern __shared__ __align__(1024) unsigned char smem_bytes[];  // 1024: raw v's 128-byte TMA swizzle
  auto& smem = *reinterpret_cast<SharedStorage<kBV>*>(smem_bytes);

  tl_entry();
  WorkItem item;
  if (!make_work_item<kBV>(params, item)) return;

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (threadIdx.x == 0) {
    for (int i = 0; i < kStages; ++i) {
      Barrier::init(&smem.raw_qkg_full[i], 1);
      Barrier::init(&smem.raw_v_full[i], 1);
      Barrier::init(&smem.prepped_empty[i], 32 * Traits::kRecurrenceWarps);
    }
    Barrier::init(&smem.state_go, 1);
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();

  if (warp < Traits::kRecurrenceWarps) {
    if constexpr (Traits::kRebalanceRegisters) cutlass::arch::warpgroup_reg_dealloc<Traits::kRecurrenceRegs>();
    Recurrence<kBV>{params, smem, item, warp, lane}.template run<kCheckpoints>();
  } else {
    if constexpr (Traits::kRebalanceRegisters) cutlass::arch::warpgroup_reg_alloc<Traits::kPrepRegs>();
    // Pair p = warps (2p, 2p+1) after the recurrence warps: its halves sit on
    // different schedulers.
    const int prep = warp - Traits::kRecurrenceWarps;
    ChunkPrep<kBV>{params, smem, item, prep / 2, prep % 2, lane}
        .template run<kUnbounded, Traits::template kLmqkUnroll<kUnbounded, kCheckpoints>>();
  }
#endif
}

}  // namespace flash_kda::sm90
