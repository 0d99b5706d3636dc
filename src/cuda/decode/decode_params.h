// Plain parameters and tile constants of the CUDA decode kernels, filled by
// the launcher (decode_backend.cpp) from validated DecodeParams.
// Host- and device-visible; 64-bit offsets throughout.
#pragma once

#include <cstdint>

#include "flash_kda/flash_kda.h"

namespace flash_kda::decode_gpu {

// One CTA of kThreads updates kPasses x kRowsPerPass value rows of one
// (sequence, head) state. The copy engine brings the CTA's rows into shared
// memory (one bulk copy per pass, issued as soon as the slot is known): the
// bytes in flight per SM are then bounded by shared memory, not by the
// registers a per-thread load needs until it lands. Each pass, kLanesPerRow
// threads share a 128-wide row, each holding kValuesPerThread fp32 values of
// it in registers (dot products over K: log2(kLanesPerRow) shuffle steps).
// fp32 pools: 8 lanes per row, 32 rows per pass; bf16 pools: 4 lanes per row,
// 64 rows per pass (32 values per thread). Either way a pass is 16 KiB of state.
inline constexpr int kThreads = 256;

template <int kLanes>
struct DecodeLayout {
  static constexpr int kLanesPerRow = kLanes;
  static constexpr int kRowsPerPass = kThreads / kLanes;
  static constexpr int kValuesPerThread = kHeadDim / kLanes;
};
using Fp32Layout = DecodeLayout<8>;   // 32 rows per pass, 16 values per thread
using Bf16Layout = DecodeLayout<4>;   // 64 rows per pass, 32 values per thread
// Passes per CTA: 2 (twice the state in flight per CTA: pass 1's copy lands
// while pass 0 computes) when the grid still has kTwoPassMinCtasPerSm CTAs per
// SM, else 1 (twice the CTAs, to fill the SMs at small N * H). 3, not 4: N8
// H32 fp32 (512 two-pass CTAs on 132 SMs) ran 1 pass in two waves.
inline constexpr int kTwoPassMinCtasPerSm = 3;
// CTAs per (sequence, head) of a layout with kPasses passes.
template <class Layout, int kPasses>
inline constexpr int kValueBlocks = kHeadDim / (kPasses * Layout::kRowsPerPass);
// The most CTAs per (sequence, head) of any kernel (grid-size checks).
inline constexpr int kMaxValueBlocks = kValueBlocks<Fp32Layout, 1>;
// Bytes of the status word (padded) at the start of the workspace.
inline constexpr size_t kStatusBytes = 256;
// Calls with at most this many sequences skip the separate check kernel:
// every decode CTA checks cu_seqlens / state_indices itself (one index per
// thread into shared memory, the N (N - 1) / 2 <= 2016 duplicate comparisons
// spread over the 256 threads: <= 16 shared-memory compares each), hidden
// behind its own state copy. At small N the call is launch-latency bound
// (~2-3 us for the second launch and the dependency between the two); past
// ~64 the all-pairs check grows quadratically per CTA (N = 256: ~128 compares
// per thread in each of N * H * 4 CTAs) while the second launch is a shrinking
// fraction of a call that already moves >= N * H * 32 KiB of state.
// Measured (H200): at N = 64, H = 32 the fused check made the call slower
// (96.6 us against 83.0 us with the check kernel), so the bound is 16.
inline constexpr int kFusedCheckMaxSequences = 16;

enum class StateType : int { kBFloat16 = 0, kFloat32 = 1 };

struct DecodeKernelParams {
  const void* q;      // bf16 [total, H, 128]   (total = N * t, or the packed length)
  const void* k;
  const void* v;
  const void* g;
  const void* beta;   // bf16 [total, H]
  void* out;          // bf16 [total, H, 128]
  const float* A_log;    // [H]
  const float* dt_bias;  // [H, 128]
  void* state;           // [P, H, 128 (v), 128 (k)], bf16 or fp32, updated in place
  const void* state_indices;  // int32/int64 [N]
  const void* cu_seqlens;     // int32/int64 [N + 1], or null (fixed layout)
  int32_t* status;            // written by the check kernel (read by the decode kernel),
                              // or by CTA (0, 0) of a decode kernel that checks itself
  int64_t pool_size;          // P
  int64_t total_tokens;
  int64_t num_sequences;      // N
  int tokens;                 // t (fixed layout); 0 with cu_seqlens
  int heads;
  bool indices_int64;
  bool cu_seqlens_int64;
  bool fused_check;           // num_sequences <= kFusedCheckMaxSequences: no check kernel
  float scale;
  float gate_scale;           // lower_bound * log2(e): gates applied in base 2
};

}  // namespace flash_kda::decode_gpu
