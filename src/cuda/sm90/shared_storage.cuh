// Shared-memory layout of the SM90 forward kernel.
//
// Four prep warp pairs each own one pipeline stage: chunk c lives in stage c % 4.
//   raw:     bulk-copy targets for the chunk's q, k, g (one barrier) and v (another)
//   scratch: the prep pair's working tiles (kd, ki, residues of qd and ki, L, INV·diag(b))
//   prepped: what the recurrence warps read for the chunk (W;qd, kr, Mqk, 2^Γ, U0ᵀ)
#pragma once

#include "cuda/sm90/device_utils.cuh"
#include "common/constants.h"

namespace flash_kda::sm90 {

inline constexpr int kDim = kHeadDim;      // K == V == 128
inline constexpr int kStages = 4;                // == prep warp pairs
inline constexpr int kPrepWarps = 2 * kStages;   // two warps (halves) per stage

template <int kBV>
struct SharedStorage {
  static_assert(kChunk == 16, "the fragment layouts assume 16-token chunks");
  static constexpr int kVTiles = kBV / 16;  // 16-row slices of this CTA's V block

  struct Raw {
    bf16 q[kChunk * kDim];   // linear rows: bulk-copy destinations
    bf16 k[kChunk * kDim];
    bf16 g[kChunk * kDim];
    bf16 v[kChunk * kBV];
  };
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
    bf16 qd_lo[kChunk * kDim];  // qd - bf16(qd), swizzled
    bf16 ki_lo[kChunk * kDim];  // ki - bf16(ki)
    union {
      float gamma_part[2][kDim];        // the halves' gate sums, exchanged
      float lmat[kChunk * kChunk];      // L, fp32, strictly lower, rows scaled by b
    };
    float ref_scale[kDim];  // unbounded gates: 2^r per key channel (see ChunkPrep)
  };
  struct Prepped {
    bf16 wq[2 * kChunk * kDim];      // rows 0-15: W = INV·diag(b)·kd; rows 16-31: qd (swz128)
    bf16 kr[kChunk * kDim];          // swz128
    bf16 mqk[kChunk * kChunk];       // Mqk = mqk + mqk_lo (bf16 hi/lo), swz16, lower triangle with diagonal
    bf16 mqk_lo[kChunk * kChunk];
    float decay[kDim];               // 2^Γ per key channel
    // U0ᵀ = vᵀ·(INV·diag(b))ᵀ in mma-fragment order; recurrence warp w then
    // reuses its own slice u0[w] to stage its output tile.
    float u0[kVTiles][32][8];
  };

  Raw raw[kStages];
  Scratch scratch[kStages];
  Prepped prepped[kStages];
  uint64_t raw_qkg_full[kStages];
  uint64_t raw_v_full[kStages];
  uint64_t prepped_full[kStages];
  uint64_t prepped_empty[kStages];
};

}  // namespace flash_kda::sm90
