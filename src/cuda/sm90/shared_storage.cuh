// Shared-memory layout of the SM90 forward kernel.
//
// Each prep warp pair owns one pipeline stage: chunk c lives in stage c % kStages.
//   raw:     bulk-copy targets for the chunk's q, k, g (one barrier) and all 128 v columns (another)
//   scratch: the prep pair's working tiles (ki, residues of qd and ki, L, INV·diag(b))
//   prepped: what the recurrence warps read for the chunk (W;qd, kr, Mqk, 2^Γ, U0ᵀ)
//
// One CTA per (sequence, head) (kBV = 128): the pair writes its prepped stage
// in place, once the recurrence has released it (4 stages).
//
// kBV < 128: the 128 / kBV CTAs of one (sequence, head) form a thread block
// cluster and split the prep: pair p of CTA r prepares chunks p + 3r + 3C·j.
// The pair builds the chunk in a private image in its scratch (so its work
// never waits for the recurrence), then bulk-copies the value-independent
// part and each CTA's U0ᵀ slice into the prepped stage of every CTA of the
// cluster, itself included (DSMEM). 3 stages: the images take the room of a
// fourth, and 3 x C chunks are in preparation at once instead of 4.

#pragma once

#include "cuda/sm90/device_utils.cuh"
#include "common/constants.h"

#include <cstddef>
#include <type_traits>

namespace flash_kda::sm90 {

inline constexpr int kDim = kHeadDim;  // K == V == 128

template <int kBV>
struct SharedStorage {
  static_assert(kChunk == 16, "the fragment layouts assume 16-token chunks");
  static constexpr int kVTiles = kBV / 16;     // 16-row slices of this CTA's V block
  static constexpr int kAllVTiles = kDim / 16;
  static constexpr int kCluster = kDim / kBV;  // CTAs sharing one (sequence, head)
  static constexpr bool kImages = kCluster > 1;
  static constexpr int kStages = kImages ? 3 : 4;  // == prep warp pairs
  static constexpr int kPrepWarps = 2 * kStages;   // two warps (halves) per stage

  struct alignas(16) Raw {
    bf16 q[kChunk * kDim];   // linear rows: bulk-copy destinations
    bf16 k[kChunk * kDim];
    bf16 g[kChunk * kDim];
    bf16 v[kChunk * kDim];   // all value columns (a cluster's U0ᵀ is computed by one CTA)
  };
  // What every CTA of a cluster receives for a chunk, apart from its U0ᵀ slice.
  struct alignas(16) Shared {
    // rows 0-15: kd = k·2^G (swz128), overwritten in place by W = INV·diag(b)·kd;
    // rows 16-31: qd = scale·q·2^G (swz128)
    bf16 wq[2 * kChunk * kDim];
    bf16 kr[kChunk * kDim];          // swz128
    bf16 mqk[kChunk * kChunk];       // Mqk = mqk + mqk_lo (bf16 hi/lo), swz16, lower triangle with diagonal
    bf16 mqk_lo[kChunk * kChunk];
    float decay[kDim];               // 2^Γ per key channel
  };
  struct alignas(16) Scratch {
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
      struct {
        bf16 qd_lo[kChunk * kDim];  // qd - bf16(qd), swizzled
        bf16 ki_lo[kChunk * kDim];  // ki - bf16(ki)
      } lo;
      // (images) U0ᵀ of all value rows, written after Mqk has read the residues
      float u0_all[kAllVTiles][32][8];
    };
    union {
      float gamma_part[2][kDim];        // the halves' gate sums, exchanged
      float lmat[kChunk * kChunk];      // L, fp32, strictly lower, rows scaled by b
    };
    float ref_scale[kDim];  // unbounded gates: 2^r per key channel (see ChunkPrep)
  };
  struct alignas(16) Prepped {
    Shared shared;
    // U0ᵀ = vᵀ·(INV·diag(b))ᵀ in mma-fragment order; recurrence warp w then
    // reuses its own slice u0[w] to stage its output tile.
    float u0[kVTiles][32][8];
  };
  struct alignas(16) Empty {};
  static constexpr uint32_t kSharedBytes = uint32_t(sizeof(Shared));
  static constexpr uint32_t kU0Bytes = uint32_t(sizeof(Prepped::u0));
  static_assert(kSharedBytes % 16 == 0 && kU0Bytes % 16 == 0, "bulk copies move 16-byte multiples");
  static_assert(sizeof(Raw) % 16 == 0 && sizeof(Scratch) % 16 == 0 && sizeof(Prepped) % 16 == 0,
                "stages must stay 16-byte aligned");

  Raw raw[kStages];
  Scratch scratch[kStages];
  std::conditional_t<kImages, Shared, Empty> image[kImages ? kStages : 1];  // the pairs' private images
  Prepped prepped[kStages];
  uint64_t raw_qkg_full[kStages];
  uint64_t raw_v_full[kStages];
  uint64_t prepped_full[kStages];   // one arrival (the publishing pair) + (images) the bytes of its copies
  uint64_t prepped_empty[kStages];  // one arrival per recurrence warp of every CTA of the cluster
  uint64_t image_free[kStages];     // (images) the same, releasing the publishing pair's image
};

}  // namespace flash_kda::sm90
