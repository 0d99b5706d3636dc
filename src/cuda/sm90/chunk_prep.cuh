// The prep role (producer): everything about a chunk that does not depend on
// the recurrent state, computed ahead of the recurrence warps.
//
// Prep warp p handles chunks p, p+4, p+8, ... in stage p. Per chunk it
//   1. bulk-loads q, k, g, v rows into its raw stage (the next chunk's loads
//      are issued as soon as this chunk's raw tiles are consumed);
//   2. L2-normalises q and k, activates the gate, cumsums it (in-thread: a
//      lane owns 4 key channels for all 16 tokens) and forms kd, ki, qd, kr;
//   3. L = diag(b)·strict_lower(kd·kiᵀ) and Mqk = lower(qd·kiᵀ) on tensor cores;
//   4. INV = (I + L)⁻¹ by fp32 forward substitution, INV·diag(b) split into
//      bf16 hi + lo so the products below keep ~16 bits;
//   5. W = INV·diag(b)·kd and U0ᵀ = vᵀ·(INV·diag(b))ᵀ (the WY form takes the
//      inverse off the recurrence's critical path);
//   6. publishes W;qd, kr, Mqk, 2^Γ, U0ᵀ in its prepped stage.
#pragma once

#include "cuda/sm90/shared_storage.cuh"
#include "cuda/sm90/work_item.cuh"

namespace flash_kda::sm90 {

template <int kBV>
struct ChunkPrep {
  using Smem = SharedStorage<kBV>;
  static constexpr int kVTiles = Smem::kVTiles;

  const FwdKernelParams& p;
  Smem& s;
  const WorkItem& w;
  const int stage;  // == prep warp index
  const int lane;

  // Issues the bulk loads of chunk c's q, k, g rows into this warp's raw stage.
  __device__ void load_qkg(int c) {
    const int valid = w.valid_rows(c);
    auto& raw = s.raw[stage];
    uint64_t* bar = &s.raw_qkg_full[stage];
    if (lane == 0) Barrier::arrive_and_expect_tx(bar, uint32_t(valid * 3 * kDim * sizeof(bf16)));
    __syncwarp();
    if (lane < valid) {
      const int64_t off = w.token_offset(p, w.row0 + int64_t(c) * kChunk + lane);
      constexpr int kRowBytes = kDim * sizeof(bf16);
      bulk_load(&raw.q[lane * kDim], static_cast<const bf16*>(p.q) + off, kRowBytes, bar);
      bulk_load(&raw.k[lane * kDim], static_cast<const bf16*>(p.k) + off, kRowBytes, bar);
      bulk_load(&raw.g[lane * kDim], static_cast<const bf16*>(p.g) + off, kRowBytes, bar);
    }
  }

  // Issues the bulk loads of chunk c's v rows (this CTA's value block only).
  __device__ void load_v(int c) {
    const int valid = w.valid_rows(c);
    uint64_t* bar = &s.raw_v_full[stage];
    constexpr int kRowBytes = kBV * sizeof(bf16);
    if (lane == 0) Barrier::arrive_and_expect_tx(bar, uint32_t(valid * kRowBytes));
    __syncwarp();
    if (lane < valid) {
      const int64_t off = w.token_offset(p, w.row0 + int64_t(c) * kChunk + lane) + w.vblock * kBV;
      bulk_load(&s.raw[stage].v[lane * kBV], static_cast<const bf16*>(p.v) + off, kRowBytes, bar);
    }
  }

  // beta logit of chunk c's token `lane` (lanes >= 16 or past the end: 0).
  __device__ float load_beta(int c) const {
    if (lane >= w.valid_rows(c)) return 0.f;
    const int64_t row = w.row0 + int64_t(c) * kChunk + lane;
    return __bfloat162float(static_cast<const bf16*>(p.beta)[row * p.heads + w.head]);
  }

  __device__ void run() {
    const int first = stage;
    if (first >= w.num_chunks) return;

    // Per-head constants: this lane's 4 key channels.
    const float a = expf(p.A_log[w.head]);
    const float4 dtb = *reinterpret_cast<const float4*>(p.dt_bias + w.head * kDim + 4 * lane);

    load_qkg(first);
    load_v(first);
    float beta_next = load_beta(first);

    for (int c = first, it = 0; c < w.num_chunks; c += kStages, ++it) {
      const int valid = w.valid_rows(c);
      const uint32_t phase = it & 1;
      // b_t = sigmoid(beta_t) for token t = lane (0 past the end).
      const float b_mine = lane < valid ? fast_sigmoid(beta_next) : 0.f;
      const int next = c + kStages;
      auto& raw = s.raw[stage];
      auto& scr = s.scratch[stage];

      Barrier::wait(&s.raw_qkg_full[stage], phase);

      // ---- L2 norms of q and k rows (one reduce-scatter for all 32 sums) ----
      float sums[32];
#pragma unroll
      for (int t = 0; t < kChunk; ++t) {
        const float4 q4 = load4(raw.q, t, valid);
        const float4 k4 = load4(raw.k, t, valid);
        sums[t] = q4.x * q4.x + q4.y * q4.y + q4.z * q4.z + q4.w * q4.w;
        sums[kChunk + t] = k4.x * k4.x + k4.y * k4.y + k4.z * k4.z + k4.w * k4.w;
      }
      // lane l < 16: 1/|q_l|, lane l >= 16: 1/|k_(l-16)|
      const float rnorm = rsqrtf(warp_reduce_scatter32(sums, lane) + float(kL2NormEps));

      // ---- gate: gate_t = lower_bound·log2(e)·sigmoid(a·(g_t + dt_bias)) ----
      float gate[kChunk][4];
      float gamma[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int t = 0; t < kChunk; ++t) {
        const float4 g4 = load4(raw.g, t, valid);
        const float gv[4] = {g4.x + dtb.x, g4.y + dtb.y, g4.z + dtb.z, g4.w + dtb.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          gate[t][i] = t < valid ? p.gate_scale * fast_sigmoid(a * gv[i]) : 0.f;
          gamma[i] += gate[t][i];  // same summation order as G below: Γ == G_15 exactly
        }
      }

      // ---- kd = k·2^G, ki = k·2^-G, qd = scale·q·2^G, kr = k·2^(Γ-G) ----
      float exp_gamma[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) exp_gamma[i] = fast_exp2(gamma[i]);
      float cum[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int t = 0; t < kChunk; ++t) {
        const float rq = __shfl_sync(0xffffffffu, rnorm, t) * p.scale;
        const float rk = __shfl_sync(0xffffffffu, rnorm, kChunk + t);
        const float4 q4 = load4(raw.q, t, valid);
        const float4 k4 = load4(raw.k, t, valid);
        const float qv[4] = {q4.x, q4.y, q4.z, q4.w};
        const float kv[4] = {k4.x, k4.y, k4.z, k4.w};
        float kd[4], ki[4], qd[4], kr[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          cum[i] += gate[t][i];
          const float up = fast_exp2(cum[i]);     // <= 1
          const float down = fast_exp2(-cum[i]);  // <= 2^115.4 for lower_bound >= -5
          const float kn = kv[i] * rk;
          kd[i] = kn * up;
          ki[i] = kn * down;
          kr[i] = ki[i] * exp_gamma[i];           // = kn·2^(Γ-G) <= |kn|
          qd[i] = qv[i] * rq * up;
        }
        store4(scr.kd, t, kd);
        store4(scr.ki, t, ki);
        store4(scr.qd, t, qd);
        store4(scr.kr, t, kr);
      }
      __syncwarp();

      // The raw q/k/g tiles are consumed: prefetch the chunk after next's.
      if (next < w.num_chunks) {
        load_qkg(next);
        beta_next = load_beta(next);
      }

      // ---- L = diag(b)·strict_lower(kd·kiᵀ), Mqk = lower(qd·kiᵀ) ----
      FragC l_acc[2], m_acc[2];
      {
        const LaneRowCol ar = lane_a_order(lane), br = lane_b_order(lane);
#pragma unroll
        for (int ks = 0; ks < kDim / 16; ++ks) {
          FragA a_kd, a_qd;
          uint32_t b_ki[4];
          ldsm_x4(&scr.kd[swz128(ar.row, 16 * ks + ar.col)], a_kd.x);
          ldsm_x4(&scr.qd[swz128(ar.row, 16 * ks + ar.col)], a_qd.x);
          ldsm_x4(&scr.ki[swz128(br.row, 16 * ks + br.col)], b_ki);
          mma(l_acc[0], a_kd, FragB{{b_ki[0], b_ki[1]}});
          mma(l_acc[1], a_kd, FragB{{b_ki[2], b_ki[3]}});
          mma(m_acc[0], a_qd, FragB{{b_ki[0], b_ki[1]}});
          mma(m_acc[1], a_qd, FragB{{b_ki[2], b_ki[3]}});
        }
      }
      const int gid = lane >> 2, qid = lane & 3;
      {
        const float b_lo = __shfl_sync(0xffffffffu, b_mine, gid);
        const float b_hi = __shfl_sync(0xffffffffu, b_mine, gid + 8);
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int i = gid + (e >> 1) * 8, j = nt * 8 + 2 * qid + (e & 1);
            scr.lmat[i * kChunk + j] = j < i ? l_acc[nt].x[e] * (e < 2 ? b_lo : b_hi) : 0.f;
            if (j > i) m_acc[nt].x[e] = 0.f;
          }
        }
      }
      __syncwarp();

      // ---- INV = (I + L)^-1: lane j (< 16) solves column j in fp32 ----
      {
        const int j = lane & 15;
        float x[kChunk];
#pragma unroll
        for (int i = 0; i < kChunk; ++i) {
          float acc = i == j ? 1.f : 0.f;
#pragma unroll
          for (int m = 0; m < i; ++m) acc -= scr.lmat[i * kChunk + m] * x[m];
          x[i] = acc;
        }
        __syncwarp();  // every lane has read lmat: its storage now takes INV·diag(b)
        if (lane < kChunk) {
#pragma unroll
          for (int i = 0; i < kChunk; ++i) {
            const float val = x[i] * b_mine;  // column j scaled by b_j
            const bf16 hi = __float2bfloat16_rn(val);
            scr.invb.hi[swz16(i, j)] = hi;
            scr.invb.lo[swz16(i, j)] = __float2bfloat16_rn(val - __bfloat162float(hi));
          }
        }
      }
      __syncwarp();

      // ---- publish: wait until the recurrence has released this stage ----
      if (it > 0) Barrier::wait(&s.prepped_empty[stage], (it - 1) & 1);
      auto& out = s.prepped[stage];

      // W = INV·diag(b)·kd  -> wq rows 0..15
      {
        const LaneRowCol ar = lane_a_order(lane);
        FragA a_hi, a_lo;
        ldsm_x4(&scr.invb.hi[swz16(ar.row, ar.col)], a_hi.x);
        ldsm_x4(&scr.invb.lo[swz16(ar.row, ar.col)], a_lo.x);
#pragma unroll
        for (int cb = 0; cb < kDim / 16; ++cb) {
          uint32_t b_kd[4];
          ldsm_x4_trans(&scr.kd[swz128(ar.row, 16 * cb + ar.col)], b_kd);
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            FragC acc;
            const FragB b{{b_kd[2 * h], b_kd[2 * h + 1]}};
            mma(acc, a_hi, b);
            mma(acc, a_lo, b);
            const int col = 16 * cb + 8 * h + 2 * qid;
            *reinterpret_cast<uint32_t*>(&out.wq[swz128(gid, col)]) = pack_bf16x2(acc.x[0], acc.x[1]);
            *reinterpret_cast<uint32_t*>(&out.wq[swz128(gid + 8, col)]) = pack_bf16x2(acc.x[2], acc.x[3]);
          }
        }
      }

      // U0ᵀ = vᵀ·(INV·diag(b))ᵀ, stored in the recurrence warps' fragment order
      Barrier::wait(&s.raw_v_full[stage], phase);
      if (valid < kChunk) {  // tail: rows past the end hold stale data; make them exact zeros
        for (int idx = lane; idx < (kChunk - valid) * kBV / 8; idx += 32) {
          reinterpret_cast<uint4*>(&raw.v[valid * kBV])[idx] = make_uint4(0, 0, 0, 0);
        }
        __syncwarp();
      }
      {
        const LaneRowCol br = lane_b_order(lane);
        uint32_t b_hi[4], b_lo[4];
        ldsm_x4(&scr.invb.hi[swz16(br.row, br.col)], b_hi);
        ldsm_x4(&scr.invb.lo[swz16(br.row, br.col)], b_lo);
#pragma unroll
        for (int mt = 0; mt < kVTiles; ++mt) {
          FragA a_v;
          ldsm_x4_trans(&raw.v[br.row * kBV + 16 * mt + br.col], a_v.x);
          FragC u[2];
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            mma(u[h], a_v, FragB{{b_hi[2 * h], b_hi[2 * h + 1]}});
            mma(u[h], a_v, FragB{{b_lo[2 * h], b_lo[2 * h + 1]}});
          }
          float4* dst = reinterpret_cast<float4*>(out.u0[mt][lane]);
          dst[0] = make_float4(u[0].x[0], u[0].x[1], u[0].x[2], u[0].x[3]);
          dst[1] = make_float4(u[1].x[0], u[1].x[1], u[1].x[2], u[1].x[3]);
        }
      }
      // raw v consumed (and maybe written above): order before the async-proxy refill.
      fence_async_shared();
      __syncwarp();
      if (next < w.num_chunks) load_v(next);

      // 2^Γ, Mqk, and qd / kr copied from scratch (same swizzle).
      *reinterpret_cast<float4*>(&out.decay[4 * lane]) =
          make_float4(exp_gamma[0], exp_gamma[1], exp_gamma[2], exp_gamma[3]);
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
        const int col = nt * 8 + 2 * qid;
        *reinterpret_cast<uint32_t*>(&out.mqk[swz16(gid, col)]) = pack_bf16x2(m_acc[nt].x[0], m_acc[nt].x[1]);
        *reinterpret_cast<uint32_t*>(&out.mqk[swz16(gid + 8, col)]) = pack_bf16x2(m_acc[nt].x[2], m_acc[nt].x[3]);
      }
      {
        const uint4* src_qd = reinterpret_cast<const uint4*>(scr.qd);
        const uint4* src_kr = reinterpret_cast<const uint4*>(scr.kr);
        uint4* dst_qd = reinterpret_cast<uint4*>(&out.wq[kChunk * kDim]);
        uint4* dst_kr = reinterpret_cast<uint4*>(out.kr);
#pragma unroll
        for (int i = 0; i < kChunk * kDim / 8 / 32; ++i) {
          dst_qd[i * 32 + lane] = src_qd[i * 32 + lane];
          dst_kr[i * 32 + lane] = src_kr[i * 32 + lane];
        }
      }
      __syncwarp();
      Barrier::arrive(&s.prepped_full[stage]);
    }
  }

 private:
  // This lane's 4 channels of raw row t as fp32; rows past the end read as 0.
  __device__ float4 load4(const bf16* tile, int t, int valid) const {
    const uint2 bits = *reinterpret_cast<const uint2*>(&tile[t * kDim + 4 * lane]);
    const float2 lo = unpack_bf16x2(bits.x), hi = unpack_bf16x2(bits.y);
    return t < valid ? make_float4(lo.x, lo.y, hi.x, hi.y) : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  // Stores this lane's 4 channels of row t into a swizzled [16][128] bf16 tile.
  __device__ void store4(bf16* tile, int t, const float (&x)[4]) const {
    *reinterpret_cast<uint2*>(&tile[swz128(t, 4 * lane)]) =
        make_uint2(pack_bf16x2(x[0], x[1]), pack_bf16x2(x[2], x[3]));
  }
};

}  // namespace flash_kda::sm90
