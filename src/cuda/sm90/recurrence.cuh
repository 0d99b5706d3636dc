// The recurrence role (consumer): the only state-dependent work.
//
// Recurrence warp w owns 16 value rows of the state S (V x K), kept in fp32
// mma accumulators for the whole sequence: it never leaves registers. Per chunk:
//   P   = S·[kd; qd]ᵀ                   (8 wgmma m64n32k16 per warpgroup, or 32
//                                        mma.sync per warp at bv32; S rounded to bf16)
//   Uᵀ  = (vᵀ − P_kd)·(INV·diag(b))ᵀ     (mma.sync; the residual as bf16, INV·diag(b) as
//                                        bf16 hi + lo, from the raw v and the prep's scratch)
//   Oᵀ  = P_qd + Uᵀ·Mqkᵀ                 (mma.sync; U, Mqk as bf16 hi + lo; rounded once to bf16)
//   S   = S·diag(2^Γ) + Uᵀ·kr            (fp32; one wgmma m64n128k16, or 16 mma.sync)
// and the 16 x 16 output tile goes to HBM through a small staging buffer.
#pragma once

#include "cuda/sm90/shared_storage.cuh"
#include "cuda/sm90/timeline.cuh"
#include "cuda/sm90/work_item.cuh"

namespace flash_kda::sm90 {

template <int kBV>
struct Recurrence {
  using Smem = SharedStorage<kBV>;
  static constexpr int kNTiles = kDim / 8;  // 16 accumulator tiles of 8 key channels

  const FwdKernelParams& p;
  Smem& s;
  const WorkItem& w;
  const int warp;  // 0 .. kBV/16 - 1
  const int lane;

  // Row of state[slot] (a [*, H, 128, 128] tensor) this lane's accumulator element e belongs to.
  __device__ int64_t state_row(int64_t slot, int e) const {
    return first_state_row<kBV>(p, w, slot) + warp * 16 + (lane >> 2) + (e >> 1) * 8;
  }

  __device__ void load_state(FragC (&S)[kNTiles]) const {
    if (p.identity_start) {  // transition run: value row v starts as the unit vector e_v
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int row = w.vblock * kBV + warp * 16 + (lane >> 2) + (e >> 1) * 8;
          S[nt].x[e] = row == nt * 8 + 2 * (lane & 3) + (e & 1) ? 1.f : 0.f;
        }
      return;
    }
    const void* src;
    StateKind kind;
    if (!initial_state_source(p, w, src, kind)) return;  // zeros
    // Only once chunk 0's q, k, g landed (ChunkPrep::run_chunks arrives on
    // state_go; the prep has also asked for these rows in L2): the state is
    // first needed once chunk 0 is prepped, thousands of cycles later, and
    // these loads then hit L2. Issued at once from HBM, 64 KiB of fp32 took
    // ~4.5k cycles to issue with every SM busy and delayed chunk 0's loads
    // by ~1.2k (timeline probe, session 11).
    if (w.num_chunks > 0) wait_barrier(&s.state_go, 0);
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
      const int col = nt * 8 + 2 * (lane & 3);
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int64_t off = state_row(w.read_slot, 2 * half) * kDim + col;
        float2 v;
        if (kind == StateKind::kFloat32) {
          v = *reinterpret_cast<const float2*>(static_cast<const float*>(src) + off);
        } else {
          v = unpack_bf16x2(*reinterpret_cast<const uint32_t*>(static_cast<const bf16*>(src) + off));
        }
        S[nt].x[2 * half] = v.x;
        S[nt].x[2 * half + 1] = v.y;
      }
    }
  }

  // Writes this warp's rows of S to dst[slot] (final state or a checkpoint).
  // One base address per lane (its rows g and g + 8, columns 2q, 2q + 1);
  // every store is then base + a constant, and the dtype is decided once:
  // in the checkpoint kernel this runs every few chunks, inside the loop.
  __device__ void store_state(const FragC (&S)[kNTiles], void* dst, StateKind kind, int64_t slot) const {
    const int64_t base = state_row(slot, 0) * kDim + 2 * (lane & 3);
    if (kind == StateKind::kFloat32)
      store_rows(S, static_cast<float*>(dst) + base);
    else
      store_rows(S, static_cast<bf16*>(dst) + base);
  }
  template <typename Element>
  __device__ static void store_rows(const FragC (&S)[kNTiles], Element* row) {
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
      for (int half = 0; half < 2; ++half)
        store_pair(row + half * 8 * kDim + nt * 8, S[nt].x[2 * half], S[nt].x[2 * half + 1]);
  }
  __device__ static void store_pair(float* p, float a, float b) { *reinterpret_cast<float2*>(p) = make_float2(a, b); }
  __device__ static void store_pair(bf16* p, float a, float b) { *reinterpret_cast<uint32_t*>(p) = pack_bf16x2(a, b); }

  // Writes this warp's rows of S to checkpoint row `slot` of dst. fp32: as
  // store_state. bf16: store_state's stores write 8 rows x 16 bytes per warp
  // instruction, half a 32-byte sector per row, and the partial sectors cost
  // as much as fp32's whole ones (session 10: bf16 checkpoints cost more than
  // fp32). Here the two lanes of each pair in a row's quad first exchange
  // one n-tile's packed values (one shuffle): the even lane then holds 4
  // columns of n-tile j, the odd lane 4 of j + 1, and each store writes 8 rows
  // x 32 bytes, whole sectors (measured: the bf16 store cost -45%; the same
  // exchange for fp32, 8 rows x 64 bytes, changed nothing). Same values as
  // store_state.
  __device__ void store_checkpoint(const FragC (&S)[kNTiles], void* dst, StateKind kind, int64_t slot) const {
    if (kind == StateKind::kFloat32) {
      store_state(S, dst, kind, slot);
    } else {
      // even lane: columns 2q..2q+3 of n-tile j; odd lane: 2q-2..2q+1 of j + 1
      const int q = lane & 3;
      const bool odd = q & 1;
      const int64_t row = state_row(slot, 0) * kDim;  // row g; g + 8 is 8 rows on
      bf16* base = static_cast<bf16*>(dst) + row + (odd ? 2 * q + 6 : 2 * q);
#pragma unroll
      for (int m = 0; m < kNTiles / 2; ++m)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const uint32_t lo = pack_bf16x2(S[2 * m].x[2 * h], S[2 * m].x[2 * h + 1]);
          const uint32_t hi = pack_bf16x2(S[2 * m + 1].x[2 * h], S[2 * m + 1].x[2 * h + 1]);
          const uint32_t r = __shfl_xor_sync(0xffffffffu, odd ? lo : hi, 1);
          *reinterpret_cast<uint2*>(base + h * 8 * kDim + 16 * m) = odd ? make_uint2(r, hi) : make_uint2(lo, r);
        }
    }
  }

  // kBV >= 64: the recurrence warps form whole warpgroups, so the two
  // state products run as wgmma with B read straight from the prepped stage
  // (once per warpgroup instead of once per warp through ldmatrix). bv32 has
  // two recurrence warps and keeps mma.sync.
  static constexpr bool kWarpgroupMma = kBV >= 64;

  // S as the bf16 A fragment of key slice ks (keys 16ks..16ks+15).
  __device__ static FragA state_fragment(const FragC (&S)[kNTiles], int ks) {
    FragA a;
    a.x[0] = pack_bf16x2(S[2 * ks].x[0], S[2 * ks].x[1]);
    a.x[1] = pack_bf16x2(S[2 * ks].x[2], S[2 * ks].x[3]);
    a.x[2] = pack_bf16x2(S[2 * ks + 1].x[0], S[2 * ks + 1].x[1]);
    a.x[3] = pack_bf16x2(S[2 * ks + 1].x[2], S[2 * ks + 1].x[3]);
    return a;
  }

  // P = S·[kd; qd]ᵀ in four n-tiles: kd tokens 0-7, 8-15, qd tokens 0-7, 8-15.
  // in_flight() runs while the last wgmma batch is in flight (after the
  // products with mma.sync): work that does not need P, off the chain.
  template <class InFlight>
  __device__ void state_products(const FragC (&S)[kNTiles], const typename Smem::Prepped& in, const LaneRowCol& br,
                                 FragC (&P)[4], InFlight&& in_flight) const {
    if constexpr (kWarpgroupMma) {
      // wq is K-major with 128-byte rows: slice ks starts 32 bytes further
      // in its half, the second half (keys 64-127) 32 rows x 128 bytes on.
      // The A fragments of a batch stay reserved until it completes; at
      // kBV = 128 (120 registers per recurrence thread) two batches of four
      // fit, eight would make ptxas serialise every wgmma.
      constexpr int kBatches = kBV == 128 ? 2 : 1, kPerBatch = kDim / 16 / kBatches;
      const uint64_t desc = sw128_desc(in.wq, 16, 8 * 128);
      fence_registers(P);
#pragma unroll
      for (int batch = 0; batch < kBatches; ++batch) {
        FragA a[kPerBatch];
#pragma unroll
        for (int j = 0; j < kPerBatch; ++j) a[j] = state_fragment(S, batch * kPerBatch + j);
        wgmma_fence();
#pragma unroll
        for (int j = 0; j < kPerBatch; ++j) {
          const int ks = batch * kPerBatch + j;
          wgmma_m64n32k16(P, a[j], desc + ((ks % 4) * 32 + (ks / 4) * 2 * kChunk * 128) / 16, ks > 0);
        }
        wgmma_commit();
        if (batch == kBatches - 1) in_flight();
        wgmma_wait();
      }
      fence_registers(P);
    } else {
#pragma unroll
      for (int ks = 0; ks < kDim / 16; ++ks) {
        const FragA a = state_fragment(S, ks);
        uint32_t bw[4], bq[4];
        ldsm_x4(&in.wq[Smem::wq_index(br.row, 16 * ks + br.col)], bw);
        ldsm_x4(&in.wq[Smem::wq_index(kChunk + br.row, 16 * ks + br.col)], bq);
        mma(P[0], a, FragB{{bw[0], bw[1]}});
        mma(P[1], a, FragB{{bw[2], bw[3]}});
        mma(P[2], a, FragB{{bq[0], bq[1]}});
        mma(P[3], a, FragB{{bq[2], bq[3]}});
      }
      in_flight();
    }
  }

  // S = S·diag(2^Γ) + Uᵀ·kr. With wgmma it is left in flight: the caller
  // waits (wgmma_wait + fence_registers(S)) before S or the stage is used again.
  __device__ void update_state(FragC (&S)[kNTiles], const typename Smem::Prepped& in, const FragA& ua,
                               const LaneRowCol& ar, int qid) const {
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
      const float2 d = *reinterpret_cast<const float2*>(&in.decay[nt * 8 + 2 * qid]);
      S[nt].x[0] *= d.x;
      S[nt].x[1] *= d.y;
      S[nt].x[2] *= d.x;
      S[nt].x[3] *= d.y;
    }
    if constexpr (kWarpgroupMma) {
      // kr is MN-major: N halves (keys 0-63, 64-127) 16 rows x 128 bytes
      // apart (leading offset), token rows 8-15 8 x 128 bytes on (stride offset).
      fence_registers(S);
      wgmma_fence();
      wgmma_m64n128k16_mn(S, ua, sw128_desc(in.kr, kChunk * 128, 8 * 128));
      wgmma_commit();
    } else {
#pragma unroll
      for (int cb = 0; cb < kDim / 16; ++cb) {
        uint32_t bk[4];
        ldsm_x4_trans(&in.kr[Smem::kr_index(ar.row, 16 * cb + ar.col)], bk);
        mma(S[2 * cb], ua, FragB{{bk[0], bk[1]}});
        mma(S[2 * cb + 1], ua, FragB{{bk[2], bk[3]}});
      }
    }
  }

  // The operands of U that do not depend on the state: vᵀ as an A fragment
  // (rows = value rows, k = tokens; x[0], x[1] hold tokens 2q, 2q + 1 of rows
  // g, g + 8, x[2], x[3] tokens 2q + 8, 2q + 9, i.e. x[r] pairs with
  // accumulator n-tile r / 2, entries 2 (r % 2), + 1) and INV·diag(b) (hi +
  // lo) as B fragments, from chunk c's raw v and the prep's scratch. Tokens
  // past the end are masked out of v (those rows hold the next sequence's
  // tokens, which need not be finite; their kd rows and INV·diag(b) columns
  // are zero). Transition runs: v = 0.
  struct ValueOperands {
    FragA v{{0u, 0u, 0u, 0u}};
    uint32_t invb_hi[4], invb_lo[4];
  };
  __device__ void load_value_operands(int c, const LaneRowCol& br, int qid, ValueOperands& o) const {
    const int stage = c % kStages;
    if (!p.zero_values) {
      wait_barrier(&s.raw_v_full[stage], (c / kStages) & 1);
      ldsm_x4_trans(&s.raw[stage].v[Smem::raw_v_tile(Smem::raw_v_lane(br.row, br.col), warp)], o.v.x);
      const int valid = w.valid_rows(c);
      if (valid < kChunk) {
        const int t = 2 * qid;
        const uint32_t m0 = (t < valid ? 0x0000ffffu : 0u) | (t + 1 < valid ? 0xffff0000u : 0u);
        const uint32_t m1 = (t + 8 < valid ? 0x0000ffffu : 0u) | (t + 9 < valid ? 0xffff0000u : 0u);
        o.v.x[0] &= m0;
        o.v.x[1] &= m0;
        o.v.x[2] &= m1;
        o.v.x[3] &= m1;
      }
    }
    const auto& invb = s.scratch[stage].solve.invb;
    ldsm_x4(&invb.hi[swz16(br.row, br.col)], o.invb_hi);
    ldsm_x4(&invb.lo[swz16(br.row, br.col)], o.invb_lo);
  }

  // Uᵀ = (vᵀ − S·kdᵀ)·(INV·diag(b))ᵀ for this warp's 16 value rows, with
  // P_kd = S·kdᵀ in P[0], P[1]: here, where the warps wait on the prep anyway,
  // rather than in the prep. The residual R = vᵀ − P_kd is rounded to bf16
  // once (its rounding is of the order of the bf16 roundings of S and kd in
  // P_kd); INV·diag(b) is hi + lo.
  __device__ static void values_after_state(const FragC (&P)[4], const ValueOperands& o, FragC (&u)[2]) {
    FragA r;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 v = unpack_bf16x2(o.v.x[i]);
      const FragC& pk = P[i / 2];
      r.x[i] = pack_bf16x2(v.x - pk.x[2 * (i % 2)], v.y - pk.x[2 * (i % 2) + 1]);
    }
#pragma unroll
    for (int n = 0; n < 2; ++n) {
      mma(u[n], r, FragB{{o.invb_hi[2 * n], o.invb_hi[2 * n + 1]}});
      mma(u[n], r, FragB{{o.invb_lo[2 * n], o.invb_lo[2 * n + 1]}});
    }
  }

  // One chunk: consume prepped stage c % kStages, update S, store the output tile.
  __device__ __forceinline__ void chunk_step(FragC (&S)[kNTiles], int c, const LaneRowCol& ar,
                                             const LaneRowCol& br, int qid) const {
    const int stage = c % kStages;
    named_barrier_sync(kPreppedFullBarrier + stage, kPreppedFullThreads<kBV>);
    auto& in = s.prepped[stage];

    FragC P[4];
    ValueOperands vo;
    state_products(S, in, br, P, [&] { load_value_operands(c, br, qid, vo); });
    FragC ut[2];
    values_after_state(P, vo, ut);

    // Uᵀ as bf16 A operands (k = tokens): hi for the state update, hi + lo
    // for the output (the intra-chunk term has no fp32 state path to dilute
    // its rounding).
    const float u[8] = {ut[0].x[0], ut[0].x[1], ut[0].x[2], ut[0].x[3],
                        ut[1].x[0], ut[1].x[1], ut[1].x[2], ut[1].x[3]};
    FragA ua, ua_lo;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      ua.x[r] = pack_bf16x2(u[2 * r], u[2 * r + 1]);
      const float2 h = unpack_bf16x2(ua.x[r]);
      ua_lo.x[r] = pack_bf16x2(u[2 * r] - h.x, u[2 * r + 1] - h.y);
    }

    // Oᵀ = qd·Sᵀ + Uᵀ·Mqkᵀ with U and Mqk each as bf16 hi + lo (lo·lo dropped),
    // before the state update takes ua to the tensor cores.
    {
      uint32_t bm[4], bm_lo[4];
      ldsm_x4(&in.mqk[swz16(br.row, br.col)], bm);
      ldsm_x4(&in.mqk_lo[swz16(br.row, br.col)], bm_lo);
#pragma unroll
      for (int n = 0; n < 2; ++n) {
        const FragB hi{{bm[2 * n], bm[2 * n + 1]}}, lo{{bm_lo[2 * n], bm_lo[2 * n + 1]}};
        mma(P[2 + n], ua, hi);
        mma(P[2 + n], ua_lo, hi);
        mma(P[2 + n], ua, lo);
      }
    }

    update_state(S, in, ua, ar, qid);

    // Output tile [16 tokens][16 values]: stmatrix.trans into this warp's
    // own staging tile, then 16-byte stores; then release the stage.
    int tile = warp;
    asm volatile("" : "+r"(tile));  // (opaque: a tile address hoisted out of the chunk loop costs it registers)
    bf16* staging = s.out_staging[tile];
    const uint32_t o[4] = {pack_bf16x2(P[2].x[0], P[2].x[1]), pack_bf16x2(P[2].x[2], P[2].x[3]),
                           pack_bf16x2(P[3].x[0], P[3].x[1]), pack_bf16x2(P[3].x[2], P[3].x[3])};
    __syncwarp();  // (the tile's earlier reads by other lanes)
    stsm_x4_trans(&staging[br.row * 16 + br.col], o);
    __syncwarp();
    const int tok = lane >> 1;
    if (tok < w.valid_rows(c) && !p.skip_output) {
      const uint4 val = *reinterpret_cast<const uint4*>(&staging[tok * 16 + (lane & 1) * 8]);
      const int64_t off = w.token_offset(p, w.row0 + int64_t(c) * kChunk + tok) + w.vblock * kBV +
                          warp * 16 + (lane & 1) * 8;
      *reinterpret_cast<uint4*>(static_cast<bf16*>(p.out) + off) = val;
    }
    if constexpr (kWarpgroupMma) {  // the update has read kr and written S
      wgmma_wait();
      fence_registers(S);
    }
    __syncwarp();
    Barrier::arrive(&s.prepped_empty[stage]);
  }

  // kCheckpoints: the loop in segments of checkpoint_chunks chunks with a
  // state store after each; a kernel of its own, since the segmented loop
  // costs the plain one registers (spills 8 -> 20 bytes) and ~2.5% of its time.
  template <bool kCheckpoints>
  __device__ void run() {
    FragC S[kNTiles];
    if constexpr (kTimeline) if (warp == 0) tl_mark(lane, kTlSetup);
    load_state(S);
    if constexpr (kTimeline) if (warp == 0) tl_mark(lane, kTlStateIssued);
    // Context parallelism, first pass: keep segment 0's initial state for the
    // last pass (which may run after final_state, an alias, was written).
    if (w.segment == 0 && p.segment_final != nullptr && !p.identity_start)
      store_state(S, p.segment_final, StateKind::kFloat32, int64_t(w.sequence) * p.segments);
    // The final state may alias the initial state: every CTA has read its
    // rows above before anyone writes them below (disjoint rows per CTA,
    // and no sequence writes a slot another one reads: validated).

    const LaneRowCol ar = lane_a_order(lane), br = lane_b_order(lane);
    const int qid = lane & 3;

    if constexpr (!kCheckpoints) {
      for (int c = 0; c < w.num_chunks; ++c) {
        chunk_step(S, c, ar, br, qid);
        if constexpr (kTimeline)
          if (warp == 0 && c < 2) tl_mark(lane, c == 0 ? kTlChunk0 : kTlChunk1);
      }
    } else {
      // Segments of checkpoint_chunks chunks; after each full one, the state
      // goes to the next checkpoint row (outside the hot loop: a store inside
      // it costs registers the recurrence needs).
      for (int c = 0; c < w.num_chunks;) {
        const int end = min(c + p.checkpoint_chunks, w.num_chunks);
        for (; c < end; ++c) {
          chunk_step(S, c, ar, br, qid);
          if constexpr (kTimeline)
            if (warp == 0 && (c < 2 || c == p.checkpoint_chunks))
              tl_mark(lane, c == 0 ? kTlChunk0 : c == 1 ? kTlChunk1 : kTlCkptNext);
        }
        if (int64_t(c) * kChunk <= w.length && c % p.checkpoint_chunks == 0) {
          if constexpr (kTimeline) if (warp == 0 && c == p.checkpoint_chunks) tl_mark(lane, kTlCkptBegin);
          store_checkpoint(S, p.checkpoints, p.checkpoint_kind, w.checkpoint_row0 + c / p.checkpoint_chunks - 1);
          if constexpr (kTimeline) if (warp == 0 && c == p.checkpoint_chunks) tl_mark(lane, kTlCkptEnd);
        }
      }
    }

    if constexpr (kTimeline) if (warp == 0) tl_mark(lane, kTlLastChunk);
    if (w.write_slot >= 0) {
      if (p.segment_final != nullptr)  // (set only with segments)
        store_state(S, p.segment_final, StateKind::kFloat32, w.write_slot);
      else
        store_state(S, p.final_state, p.final_kind, w.write_slot);
    }
    if constexpr (kTimeline) {
      if (warp == 0 && w.write_slot >= 0 && p.segment_final == nullptr && p.final_kind == StateKind::kFloat32) {
        tl_mark(lane, kTlStored);
        tl_write(lane, static_cast<float*>(p.final_state) + state_row(w.write_slot, 0) * kDim);
      }
    }
  }
};

}  // namespace flash_kda::sm90
