// Shared-memory layout of the SM90 forward kernel.
//
// Four prep warp pairs each own one pipeline stage: chunk c lives in stage c % 4.
//   raw:     bulk-copy targets for the chunk's q, k, g (one barrier) and v (another)
//   scratch: the prep pair's working tiles (kd, ki, L, INV·diag(b);
//            the recurrence warps read INV·diag(b), and raw v, for U)
//   prepped: what the recurrence warps read for the chunk (kd;qd, kr, Mqk, 2^Γ)
// and, once, the recurrence warps' output staging tiles.
#pragma once

#include <cstddef>

#include "cuda/sm90/device_utils.cuh"
#include "common/constants.h"

namespace flash_kda::sm90 {

inline constexpr int kDim = kHeadDim;      // K == V == 128
inline constexpr int kStages = 4;                // == prep warp pairs
inline constexpr int kPrepWarps = 2 * kStages;   // two warps (halves) per stage
// Named barriers (0 is __syncthreads): prep pair p syncs its halves on
// kPairBarrier + p; stage s is handed to the recurrence warps on
// kPreppedFullBarrier + s (the prep pair arrives, the recurrence warps sync).
// A named barrier has no phases: the prep arrives for chunk c + 4 only after
// prepped_empty says the recurrence has consumed chunk c.
inline constexpr int kPairBarrier = 1;
inline constexpr int kPreppedFullBarrier = kPairBarrier + kStages;
template <int kBV>
inline constexpr int kPreppedFullThreads = 64 + 32 * (kBV / 16);  // the pair + the recurrence warps

template <int kBV>
struct SharedStorage {
  static_assert(kChunk == 16, "the fragment layouts assume 16-token chunks");
  static constexpr int kVTiles = kBV / 16;  // 16-row slices of this CTA's V block

  struct Raw {
    // q, k, g: TMA boxes of 64 columns with the copy engine's 128-byte
    // swizzle, i.e. sw128_index<kChunk> tiles (read through raw_index), so
    // that the prep's ldmatrix of 8 rows is conflict-free (the norms' Gram
    // products) and its row reads stay whole 16-byte chunks.
    bf16 q[kChunk * kDim];
    bf16 k[kChunk * kDim];
    bf16 g[kChunk * kDim];
    // v: TMA boxes of kRawVBoxCols columns with the copy engine's 128-byte
    // (64-byte at kBV = 32) swizzle, so that the ldmatrix.trans of 8 rows hits
    // 8 different bank groups (linear rows 256 bytes apart were 8-way
    // conflicts); read through raw_v_lane / raw_v_tile. Needs the storage
    // 1024-byte aligned.
    bf16 v[kChunk * kBV];
  };
  static constexpr int kRawVBoxCols = kBV >= 64 ? 64 : kBV;
  static constexpr int kRawQkgBoxCols = 64;
  // Element index of (row, col) in a raw q, k or g tile.
  __device__ static int raw_index(int row, int col) { return sw128_index<kChunk>(row, col); }
  struct Scratch {
    bf16 kd[kChunk * kDim];  // swizzled (swz128)
    union {
      bf16 ki[kChunk * kDim];  // read only by L and Mqk; then its space holds:
      struct {
        struct {
          bf16 hi[kChunk * kChunk];  // INV·diag(b) = hi + lo, swz16 tiles
          bf16 lo[kChunk * kChunk];
        } invb;
        float yblk[2][kChunk / 2][kChunk / 2];  // inverses of L's two 8x8 diagonal blocks
      } solve;
    };
    union {
      float gamma_part[2][kDim];        // the halves' gate sums, exchanged
      float lmat[kChunk * kChunk];      // L, fp32, strictly lower, rows scaled by b
    };
    float ref_scale[kDim];  // unbounded gates: 2^r per key channel (see ChunkPrep)
  };
  struct Prepped {
    // rows 0-15: kd (absolute, 2^G); rows 16-31: qd. wq_index layout: the
    // K-major B operand of the recurrence's P = S·[kd; qd]ᵀ (wgmma reads it in place).
    alignas(1024) bf16 wq[2 * kChunk * kDim];
    bf16 kr[kChunk * kDim];          // kr_index layout: the MN-major B operand of S += Uᵀ·kr
    bf16 mqk[kChunk * kChunk];       // Mqk = mqk + mqk_lo (bf16 hi/lo), swz16, lower triangle with diagonal
    bf16 mqk_lo[kChunk * kChunk];
    float decay[kDim];               // 2^Γ per key channel
  };

  // Element index of (row, col) in the prepped wq and kr tiles (wgmma's
  // canonical 128-byte swizzle, see sw128_index).
  __device__ static int wq_index(int row, int col) { return sw128_index<2 * kChunk>(row, col); }
  __device__ static int kr_index(int row, int col) { return sw128_index<kChunk>(row, col); }

  // Element index of raw v's (row r, column c) in the swizzled layout, for
  // c = 16 * tile + c0 (c0 in {0, 8}: one 16-byte chunk of a row) in two
  // steps: raw_v_lane(r, c0) once per lane, raw_v_tile(lane, tile) per tile
  // (an XOR with a constant: the swizzle XORs the chunk bits only).
  __device__ static int raw_v_lane(int r, int c0) {
    if constexpr (kBV >= 64) {  // 128-byte rows: chunk ^= r mod 8
      return r * 64 + (((c0 / 8) ^ (r & 7)) * 8);
    } else {  // 64-byte rows: chunk ^= (r / 2) mod 4
      return r * 32 + (((c0 / 8) ^ ((r >> 1) & 3)) * 8);
    }
  }
  __device__ static int raw_v_tile(int lane_index, int tile) {
    constexpr int kTilesPerBox = kRawVBoxCols / 16;
    return (tile / kTilesPerBox) * (kChunk * kRawVBoxCols) + (lane_index ^ ((tile % kTilesPerBox) * 16));
  }

  Raw raw[kStages];
  Scratch scratch[kStages];
  Prepped prepped[kStages];
  // Recurrence warp w's output tile [16 tokens][16 values] on its way to HBM:
  // one per warp, not one per stage (a warp's chunks are sequential and only
  // it touches its tile; one set per stage took 12 KiB more at bv128).
  alignas(16) bf16 out_staging[kVTiles][kChunk * 16];
  uint64_t raw_qkg_full[kStages];
  uint64_t raw_v_full[kStages];
  uint64_t prepped_empty[kStages];
  uint64_t state_go;  // one phase: chunk 0's q, k, g landed (prep pair 0), the initial state may load
};

// The raw q, k, g tiles take the copy engine's 128-byte swizzle (1024-byte
// aligned); swz128_step needs the scratch tiles the prep steps through (kd,
// ki) 256-byte aligned. The storage itself is 1024-byte aligned.
template <int kBV>
constexpr bool staged_tiles_aligned() {
  using S = SharedStorage<kBV>;
  using Sc = typename S::Scratch;
  using Raw = typename S::Raw;
  return offsetof(S, raw) % 1024 == 0 && sizeof(Raw) % 1024 == 0 && offsetof(Raw, k) % 1024 == 0 &&
         offsetof(Raw, g) % 1024 == 0 && offsetof(S, scratch) % 256 == 0 && sizeof(Sc) % 256 == 0 &&
         offsetof(Sc, kd) % 256 == 0 && offsetof(Sc, ki) % 256 == 0;
}
static_assert(staged_tiles_aligned<32>() && staged_tiles_aligned<64>() && staged_tiles_aligned<128>());

}  // namespace flash_kda::sm90
