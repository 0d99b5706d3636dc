// Small device helpers shared by the SM90 kernel roles: fast math, bf16
// packing, the shared-memory swizzles, and thin wrappers over CuTe's
// ldmatrix / stmatrix / mma.sync / wgmma atoms and CUTLASS's mbarrier.
#pragma once

#include <cuda_bf16.h>
#include <cstdint>

#include <cute/arch/copy_sm75.hpp>
#include <cute/arch/copy_sm90.hpp>
#include <cute/arch/copy_sm90_tma.hpp>
#include <cute/arch/mma_sm80.hpp>
#include <cute/arch/mma_sm90_desc.hpp>
#include <cute/arch/mma_sm90_gmma.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>

#include "cuda/sm90/swizzle.h"

namespace flash_kda::sm90 {

using bf16 = __nv_bfloat16;
using Barrier = cutlass::arch::ClusterTransactionBarrier;

// ---- fast math --------------------------------------------------------------
// ex2.approx: relative error ~2^-22, one MUFU op.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
// lg2.approx: absolute error ~2^-22 near 1, one MUFU op.
__device__ __forceinline__ float fast_log2(float x) {
  float y;
  asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float fast_rcp(float x) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
// sigmoid(x) = 1 / (1 + 2^(-x log2 e)); exact to a few ulp, unlike tanh.approx.
__device__ __forceinline__ float fast_sigmoid(float x) {
  return fast_rcp(1.0f + fast_exp2(-1.4426950408889634f * x));
}

// ---- bf16 packing -------------------------------------------------------------
// On 32-bit registers directly: through __nv_bfloat162 the compiler splits
// the halves into 16-bit registers and re-merges them (PRMT pairs, two
// instructions per upper-half unpack: ~14% of the prep's elementwise pass).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  uint32_t v;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(v) : "f"(hi), "f"(lo));  // first source -> upper half
  return v;
}
__device__ __forceinline__ float2 unpack_bf16x2(uint32_t v) {
  return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xffff0000u));
}

// ---- swizzled tiles: index math in swizzle.h (host-testable) ------------------
// wgmma shared-memory descriptor of a sw128_index tile starting at `tile`;
// lbo / sbo in bytes, as cute's make_gmma_desc defines them per major mode.
__device__ __forceinline__ uint64_t sw128_desc(const void* tile, uint32_t lbo, uint32_t sbo) {
  cute::GmmaDescriptor d;
  d.bitfield.start_address_ = uint16_t(cute::cast_smem_ptr_to_uint(tile) >> 4);
  d.bitfield.leading_byte_offset_ = uint16_t(lbo >> 4);
  d.bitfield.stride_byte_offset_ = uint16_t(sbo >> 4);
  d.bitfield.base_offset_ = 0;
  d.bitfield.layout_type_ = uint8_t(cute::SM90::GMMA::LayoutType::B128);
  return d.desc_;
}

// ---- tensor-core wrappers (CuTe atoms) -------------------------------------------
struct FragA { uint32_t x[4]; };   // m16 x k16 bf16, row-major A
struct FragB { uint32_t x[2]; };   // k16 x n8 bf16, "col" B
struct FragC { float x[4] = {0.f, 0.f, 0.f, 0.f}; };  // m16 x n8 fp32

__device__ __forceinline__ void mma(FragC& d, const FragA& a, const FragB& b) {
  cute::SM80_16x8x16_F32BF16BF16F32_TN::fma(d.x[0], d.x[1], d.x[2], d.x[3], a.x[0], a.x[1],
                                            a.x[2], a.x[3], b.x[0], b.x[1], d.x[0], d.x[1],
                                            d.x[2], d.x[3]);
}

// Warpgroup MMAs with A from registers: each warp passes the mma.sync A
// fragment of its 16 rows, and the accumulators are laid out as mma.sync's
// m16n8 tiles side by side. Asynchronous: between wgmma_fence() and
// wgmma_wait() the accumulators and A registers belong to the tensor cores.
namespace gmma = cute::SM90::GMMA;
// d (64 x 32, 4 m16n8 tiles) (+)= a (64 x 16) · B, B K-major (32 rows of N, 16 of K each).
__device__ __forceinline__ void wgmma_m64n32k16(FragC (&d)[4], const FragA& a, uint64_t b_desc, bool accumulate) {
  gmma::MMA_64x32x16_F32BF16BF16_RS<gmma::Major::K, gmma::Major::K>::fma(
      a.x[0], a.x[1], a.x[2], a.x[3], b_desc, d[0].x[0], d[0].x[1], d[0].x[2], d[0].x[3], d[1].x[0], d[1].x[1],
      d[1].x[2], d[1].x[3], d[2].x[0], d[2].x[1], d[2].x[2], d[2].x[3], d[3].x[0], d[3].x[1], d[3].x[2], d[3].x[3],
      accumulate ? gmma::ScaleOut::One : gmma::ScaleOut::Zero);
}
// d (64 x 128, 16 m16n8 tiles) += a (64 x 16) · B, B MN-major (16 rows of K, 128 columns of N).
__device__ __forceinline__ void wgmma_m64n128k16_mn(FragC (&d)[16], const FragA& a, uint64_t b_desc) {
  gmma::MMA_64x128x16_F32BF16BF16_RS<gmma::Major::K, gmma::Major::MN>::fma(
      a.x[0], a.x[1], a.x[2], a.x[3], b_desc,
      d[0].x[0], d[0].x[1], d[0].x[2], d[0].x[3], d[1].x[0], d[1].x[1], d[1].x[2], d[1].x[3],
      d[2].x[0], d[2].x[1], d[2].x[2], d[2].x[3], d[3].x[0], d[3].x[1], d[3].x[2], d[3].x[3],
      d[4].x[0], d[4].x[1], d[4].x[2], d[4].x[3], d[5].x[0], d[5].x[1], d[5].x[2], d[5].x[3],
      d[6].x[0], d[6].x[1], d[6].x[2], d[6].x[3], d[7].x[0], d[7].x[1], d[7].x[2], d[7].x[3],
      d[8].x[0], d[8].x[1], d[8].x[2], d[8].x[3], d[9].x[0], d[9].x[1], d[9].x[2], d[9].x[3],
      d[10].x[0], d[10].x[1], d[10].x[2], d[10].x[3], d[11].x[0], d[11].x[1], d[11].x[2], d[11].x[3],
      d[12].x[0], d[12].x[1], d[12].x[2], d[12].x[3], d[13].x[0], d[13].x[1], d[13].x[2], d[13].x[3],
      d[14].x[0], d[14].x[1], d[14].x[2], d[14].x[3], d[15].x[0], d[15].x[1], d[15].x[2], d[15].x[3],
      gmma::ScaleOut::One);
}
__device__ __forceinline__ void wgmma_fence() { cute::warpgroup_arrive(); }
__device__ __forceinline__ void wgmma_commit() { cute::warpgroup_commit_batch(); }
__device__ __forceinline__ void wgmma_wait() { cute::warpgroup_wait<0>(); }
// Keeps the compiler from moving register accesses across a wgmma fence / wait.
template <int kN>
__device__ __forceinline__ void fence_registers(FragC (&r)[kN]) {
#pragma unroll
  for (int i = 0; i < kN; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) cute::warpgroup_fence_operand(r[i].x[e]);
}

__device__ __forceinline__ void ldsm_x4(const bf16* smem, uint32_t (&r)[4]) {
  cute::SM75_U32x4_LDSM_N::copy(*reinterpret_cast<const cute::uint128_t*>(smem), r[0], r[1], r[2], r[3]);
}
// The same by shared-memory address, for loops that step the address
// themselves (see swz128_step): CuTe's atoms take a reference and recompute
// the swizzled index per call.
__device__ __forceinline__ uint32_t smem_u32(const void* p) { return cute::cast_smem_ptr_to_uint(p); }
__device__ __forceinline__ void ldsm_x4_at(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void ldsm_x2_at(uint32_t addr, uint32_t (&r)[2]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_trans(const bf16* smem, uint32_t (&r)[4]) {
  cute::SM75_U16x8_LDSM_T::copy(*reinterpret_cast<const cute::uint128_t*>(smem), r[0], r[1], r[2], r[3]);
}
__device__ __forceinline__ void stsm_x4_trans(bf16* smem, const uint32_t (&r)[4]) {
  cute::SM90_U16x8_STSM_T::copy(r[0], r[1], r[2], r[3], *reinterpret_cast<cute::uint128_t*>(smem));
}

// Lane addressing for ldmatrix.x4 / stmatrix.x4 over a 16x16 block at (row0, col0).
// "A order": matrices (rows 0-7, cols 0-7), (rows 8-15, cols 0-7), (rows 0-7, cols 8-15), (rows 8-15, cols 8-15).
// "B order": matrices (rows 0-7, cols 0-7), (rows 0-7, cols 8-15), (rows 8-15, cols 0-7), (rows 8-15, cols 8-15).
struct LaneRowCol { int row, col; };
__device__ __forceinline__ LaneRowCol lane_a_order(int lane) {
  const int m = lane >> 3;
  return {(lane & 7) + (m & 1) * 8, (m >> 1) * 8};
}
__device__ __forceinline__ LaneRowCol lane_b_order(int lane) {
  const int m = lane >> 3;
  return {(lane & 7) + (m >> 1) * 8, (m & 1) * 8};
}

// ---- TMA loads -----------------------------------------------------------------------
// A TMA load of one box of a 3-D tensor map (coordinates innermost first)
// into shared memory, completing on `bar`. `map` is in kernel-parameter space.
__device__ __forceinline__ void tma_load_3d(void* smem_dst, const CUtensorMap* map, uint64_t* bar, int c0, int c1,
                                            int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];"
      ::"r"(cute::cast_smem_ptr_to_uint(smem_dst)), "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2),
        "r"(cute::cast_smem_ptr_to_uint(bar))
      : "memory");
}

// Asks the copy engine to bring `bytes` (a multiple of 16, 16-byte aligned)
// at `src` into L2. A hint: nothing is written, there is nothing to wait for.
__device__ __forceinline__ void prefetch_l2_bulk(const void* src, uint32_t bytes) {
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(src), "r"(bytes) : "memory");
}

// Spins on an mbarrier phase without a suspend-time hint: the waits here are
// short and on the critical path, so a sleeping warp would cost more than it saves.
__device__ __forceinline__ void wait_barrier(uint64_t* bar, uint32_t phase) {
  const uint32_t addr = cute::cast_smem_ptr_to_uint(bar);
  asm volatile(
      "{\n\t.reg .pred p;\n\t"
      "WAIT_%=:\n\t"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n\t"
      "@!p bra WAIT_%=;\n\t}"
      ::"r"(addr), "r"(phase) : "memory");
}

// ---- warp reductions ---------------------------------------------------------------
// Barrier over the two warps (64 threads) of one prep pair.
__device__ __forceinline__ void pair_barrier(int id) {
  asm volatile("bar.sync %0, 64;" ::"r"(id) : "memory");
}
// Named-barrier hand-off: producers arrive without waiting, consumers sync
// (and sleep in hardware: no polling loop takes issue slots).
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

}  // namespace flash_kda::sm90
