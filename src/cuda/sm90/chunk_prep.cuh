// The prep role (producer): everything about a chunk that does not depend on
// the recurrent state, computed ahead of the recurrence warps.
//
// Prep pair p (two warps, "halves") handles chunks p, p+4, p+8, ... in stage p;
// half h owns tokens 8h..8h+7 for the elementwise work and half of every
// matrix product. Per chunk:
//   1. bulk-load q, k, g, v rows into the raw stage (the next chunk's loads
//      are issued as soon as this chunk's raw tiles are consumed);
//   2. L2-normalise q and k (norms from a Gram product on the tensor cores),
//      activate the gate and cumsum it (a lane owns 4 key channels; the
//      halves exchange their partial sums), form kd, ki, qd, kr;
//   3. L = diag(b)·strict_lower(kd·kiᵀ) and Mqk = lower(qd·kiᵀ) on tensor cores;
//   4. INV = (I + L)⁻¹ in fp32 by 8x8 blocks (two small forward substitutions
//      in parallel, then the off-diagonal block), INV·diag(b) split into bf16
//      hi + lo so the recurrence's product with it keeps ~16 bits;
//   5. publish kd;qd, kr, Mqk, 2^Γ in the prepped stage (kd, qd and kr are
//      written there directly by step 2, once the recurrence has released it).
// The WY form's U = INV·diag(b)·(v − kd·Sᵀ) is left to the recurrence warps,
// which wait on the prep anyway: they need S·kdᵀ for it, read v from the raw
// stage and INV·diag(b) from this pair's scratch, both kept until they
// release the stage. (Until session 10 the prep formed W = INV·diag(b)·kd and
// the recurrence U = INV·diag(b)·v − S·Wᵀ: the same products, with W's 32
// mma per chunk on the prep's critical path.)
#pragma once

#include "cuda/sm90/shared_storage.cuh"
#include "cuda/sm90/timeline.cuh"
#include "cuda/sm90/work_item.cuh"

namespace flash_kda::sm90 {

template <int kBV>
struct ChunkPrep {
  using Smem = SharedStorage<kBV>;
  static constexpr int kHalf = kChunk / 2;  // tokens per half

  const FwdKernelParams& p;
  Smem& s;
  const WorkItem& w;
  const int stage;  // == prep pair index
  const int half;   // 0 or 1
  int lane;         // (laundered per chunk, see run_chunks)

  // Gate constants of this lane's 4 key channels (set once per work item):
  //   lower bound: 2^(gate_mul·g + bias2) = exp(-a (g + dt_bias)), gate_mul = -a·log2(e)
  //   softplus:    log2(e)·(g + dt_bias) = fma(log2(e), g, bias2), then times neg_a = -a
  float gate_mul = 0.f;
  float neg_a = 0.f;
  float bias2[4] = {0.f, 0.f, 0.f, 0.f};

  static constexpr float kLog2eF = float(kLog2e);

  // The base-2 log decays of this lane's 4 channels of 8 tokens, in place
  // from their gate inputs g. kUnbounded: softplus or precomputed (a uniform
  // runtime branch, taken once outside the loops so that the 32 channel-tokens'
  // MUFU chains interleave), clamped at min_gate.
  template <bool kUnbounded>
  __device__ void activate_gates(float (&gate)[kHalf][4]) const {
    if constexpr (!kUnbounded) {
#pragma unroll
      for (int t = 0; t < kHalf; ++t)
#pragma unroll
        for (int i = 0; i < 4; ++i)
          gate[t][i] = p.gate_scale * fast_rcp(1.0f + fast_exp2(fmaf(gate_mul, gate[t][i], bias2[i])));
    } else if (p.gate_kind == GateKind::kSoftplus) {
      // softplus(x)·log2(e) = log2(1 + 2^y), y = x·log2(e), computed without overflow
#pragma unroll
      for (int t = 0; t < kHalf; ++t)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float y = fmaf(kLog2eF, gate[t][i], bias2[i]);
          gate[t][i] = fmaxf(neg_a * (fmaxf(y, 0.f) + fast_log2(1.0f + fast_exp2(-fabsf(y)))), p.min_gate);
        }
    } else {  // precomputed
#pragma unroll
      for (int t = 0; t < kHalf; ++t)
#pragma unroll
        for (int i = 0; i < 4; ++i) gate[t][i] = fmaxf(kLog2eF * gate[t][i], p.min_gate);
    }
  }

  __device__ void sync_pair() const { pair_barrier(kPairBarrier + stage); }

  // L2 norms, gate, cumsum and the decayed operands of this half's 8 tokens:
  // writes kd, ki, qd, kr rows to scratch and returns 2^Γ of this lane's
  // channels and, in lane 4r + r / 2, Mqk's diagonal entry for the half's
  // token r (mqk_diag). kFull: all 16 rows are real tokens (no masking needed).
  //
  // Unbounded gates (softplus, precomputed; clamped at min_gate per token):
  // kd, ki, qd are taken relative to a per-channel reference 2^r, r =
  // ceil(G at the end of half 0), so each spans at most half a chunk (8
  // tokens, 2^±115.4) and L, Mqk never meet an overflow; r is an integer, so
  // qd and kd are brought back to 2^G exactly (rescale_qd; kd·2^r into wq).
  template <bool kFull, bool kUnbounded>
  __device__ void elementwise(int c, int valid, int it, float (&exp_gamma)[4], float& mqk_diag) {
    constexpr bool kRelative = kUnbounded;
    auto& raw = s.raw[stage];
    auto& scr = s.scratch[stage];
    auto& out = s.prepped[stage];
    const int t0 = half * kHalf;
    // Squared L2 norms of this half's 8 q and 8 k rows on the tensor cores:
    // A = [q rows; k rows] (16 x 128), C = A·Aᵀ, whose diagonal holds them. B
    // = Aᵀ needs no load: A's fragment halves (rows 0-7 | rows 8-15) are the B
    // fragments of n-tile 0 (the q rows) and n-tile 1 (the k rows).
    FragC gram_q, gram_k;
    {
      const LaneRowCol ar = lane_a_order(lane);  // rows 0-7: q, rows 8-15: k
      const bf16* tile = ar.row < kHalf ? raw.q : raw.k;
      const uint32_t a0 = smem_u32(&tile[Smem::raw_index(t0 + (ar.row & 7), ar.col)]);
#pragma unroll
      for (int ks = 0; ks < kDim / 16; ++ks) {
        FragA a;
        ldsm_x4_at(sw128_step<kChunk>(a0, ks), a.x);
        mma(gram_q, a, FragB{{a.x[0], a.x[2]}});
        mma(gram_k, a, FragB{{a.x[1], a.x[3]}});
      }
    }
    // |q_r|² = C[r][r] and |k_r|² = C[8 + r][8 + r] sit in lane 4r + r / 2
    // (entry r % 2 of its row pair); rows past the end count as zeros.
    float rnorm_q, rnorm_k;
    {
      const int r = lane >> 2;
      const bool odd = r & 1;
      float q_sq = odd ? gram_q.x[1] : gram_q.x[0];
      float k_sq = odd ? gram_k.x[3] : gram_k.x[2];
      // q_r·k_r = C[r][r] of A·(k rows)ᵀ: Mqk's diagonal scale·q̂_r·k̂_r in fp32, since the
      // token's decay 2^G and its inverse cancel (the bf16 qd·ki would round both operands).
      float qk = odd ? gram_k.x[1] : gram_k.x[0];
      if (!kFull && t0 + r >= valid) q_sq = k_sq = qk = 0.f;
      rnorm_q = rsqrtf(q_sq + float(kL2NormEps)) * p.scale;
      rnorm_k = rsqrtf(k_sq + float(kL2NormEps));
      mqk_diag = qk * rnorm_q * rnorm_k;
    }

    // base-2 gates of this half's tokens, cumsum partials
    float gate[kHalf][4];
    if (kUnbounded && p.gate_kind == GateKind::kPrecomputedF32) {  // fp32 gates: straight from global memory
#pragma unroll
      for (int t = 0; t < kHalf; ++t) {
        float4 g4 = make_float4(0.f, 0.f, 0.f, 0.f);
        if (kFull || t0 + t < valid)
          g4 = __ldg(reinterpret_cast<const float4*>(static_cast<const float*>(p.g) +
                                                     w.token_offset(p, w.row0 + int64_t(c) * kChunk + t0 + t)) +
                     lane);
        gate[t][0] = g4.x; gate[t][1] = g4.y; gate[t][2] = g4.z; gate[t][3] = g4.w;
      }
    } else {
#pragma unroll
      for (int t = 0; t < kHalf; ++t) {
        const float4 g4 = unpack4(load_row4<kFull>(raw.g, t0 + t, valid));
        gate[t][0] = g4.x; gate[t][1] = g4.y; gate[t][2] = g4.z; gate[t][3] = g4.w;
      }
    }
    activate_gates<kUnbounded>(gate);
    float part[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int t = 0; t < kHalf; ++t)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if (!kFull && t0 + t >= valid) gate[t][i] = 0.f;
        part[i] += gate[t][i];
      }
    // Exchange the halves' sums: half 1's G starts at half 0's total; Γ = both.
    *reinterpret_cast<float4*>(&scr.gamma_part[half][4 * lane]) = make_float4(part[0], part[1], part[2], part[3]);
    sync_pair();  // #1
    // The main pass writes into the prepped stage, and into scratch ki whose
    // space holds INV·diag(b), which the recurrence reads for U: wait until
    // the recurrence has released chunk c - 4. The prep is the slower side,
    // so this wait is normally already satisfied.
    if (it > 0) wait_barrier(&s.prepped_empty[stage], (it - 1) & 1);
    const float4 p0 = *reinterpret_cast<const float4*>(&scr.gamma_part[0][4 * lane]);
    const float4 p1 = *reinterpret_cast<const float4*>(&scr.gamma_part[1][4 * lane]);
    exp_gamma[0] = fast_exp2(p0.x + p1.x);
    exp_gamma[1] = fast_exp2(p0.y + p1.y);
    exp_gamma[2] = fast_exp2(p0.z + p1.z);
    exp_gamma[3] = fast_exp2(p0.w + p1.w);
    float cum[4] = {0.f, 0.f, 0.f, 0.f};
    if (half == 1) {
      cum[0] = p0.x; cum[1] = p0.y; cum[2] = p0.z; cum[3] = p0.w;
    }
    float gamma_minus_ref[4];  // (relative mode) Γ - r, for kr = k·2^(Γ - G)
    float ref_scale[4];        // (relative mode) 2^r, for kd = kd_rel·2^r in wq
    if constexpr (kRelative) {
      const float p0v[4] = {p0.x, p0.y, p0.z, p0.w};
      const float gam[4] = {p0.x + p1.x, p0.y + p1.y, p0.z + p1.z, p0.w + p1.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        // integer r in [-126, 126]: 2^r is a normal float, built exactly
        const float r = fminf(fmaxf(ceilf(p0v[i]), -126.f), 126.f);
        cum[i] -= r;
        gamma_minus_ref[i] = gam[i] - r;
        ref_scale[i] = __int_as_float((127 + int(r)) << 23);
      }
      if (half == 0)
        *reinterpret_cast<float4*>(&scr.ref_scale[4 * lane]) =
            make_float4(ref_scale[0], ref_scale[1], ref_scale[2], ref_scale[3]);
    }

    // kd = k·2^G, ki = k·2^-G, qd = scale·q·2^G, kr = k·2^(Γ-G)
#pragma unroll
    for (int t = 0; t < kHalf; ++t) {
      const float rq = __shfl_sync(0xffffffffu, rnorm_q, 4 * t + t / 2);
      const float rk = __shfl_sync(0xffffffffu, rnorm_k, 4 * t + t / 2);
      const float4 q4 = unpack4(load_row4<kFull>(raw.q, t0 + t, valid));
      const float4 k4 = unpack4(load_row4<kFull>(raw.k, t0 + t, valid));
      const float qv[4] = {q4.x, q4.y, q4.z, q4.w};
      const float kv[4] = {k4.x, k4.y, k4.z, k4.w};
      float kd[4], ki[4], qd[4], kr[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        cum[i] += gate[t][i];
        const float up = fast_exp2(cum[i]);     // <= 1 (relative: <= 2^115.4)
        const float down = fast_exp2(-cum[i]);  // <= 2^115.4 for lower_bound >= -5 (relative: too)
        const float kn = kv[i] * rk;
        kd[i] = kn * up;
        ki[i] = kn * down;
        if constexpr (kRelative)
          kr[i] = kn * fast_exp2(gamma_minus_ref[i] - cum[i]);  // 2^Γ itself may underflow
        else
          kr[i] = ki[i] * exp_gamma[i];         // = kn·2^(Γ-G) <= |kn|
        qd[i] = qv[i] * rq * up;
      }
      // kd, qd and kr go straight to the prepped stage (released before this
      // pass); kd (relative, for L) also to scratch.
      const uint2 qd_bf = pack4(qd), ki_bf = pack4(ki), kd_bf = pack4(kd);
      uint2 kd_abs_bf = kd_bf;
      if constexpr (kRelative) {  // kd·2^r: times a power of two, the same rounding
        float kd_abs[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) kd_abs[i] = kd[i] * ref_scale[i];
        kd_abs_bf = pack4(kd_abs);
      }
      *reinterpret_cast<uint2*>(&out.wq[Smem::wq_index(t0 + t, 4 * lane)]) = kd_abs_bf;
      *reinterpret_cast<uint2*>(&out.wq[Smem::wq_index(kChunk + t0 + t, 4 * lane)]) = qd_bf;
      store4_at(&out.kr[Smem::kr_index(t0 + t, 4 * lane)], kr);
      store_bits4(scr.kd, t0 + t, kd_bf);
      store_bits4(scr.ki, t0 + t, ki_bf);
      // Mqk = qd·kiᵀ from these bf16 rows alone, like L: an off-diagonal
      // entry carries two bf16 roundings (~1e-3 relative), diluted by the
      // other terms of its output row. The diagonal, alone in a one-token
      // row and where q·k cancels, comes in fp32 from the L2 norms' Gram
      // matrix (mqk_diag). bf16 residues of qd and ki cost 6-10% of the time
      // for ~0.06e-3 of output error (NOTES, session 18).
    }
  }


  // Issues the TMA loads of chunk c's q, k, g rows (one thread of half 0, two
  // 64-column boxes per tensor: the copy engine's 128-byte swizzle);
  // fp32 gates are read by elementwise itself. All 16 rows arrive: rows past
  // the sequence hold the next sequence's tokens or zeros, masked by `valid`.
  // (Tensor-map loads of whole boxes: 16 per-row bulk copies need uniform
  // operands, so the compiler serialised them over the lanes: 16% of the
  // prep warps' stall samples in ncu, session 4.)
  template <bool kUnbounded>
  __device__ void load_qkg(int c) {
    if (lane != 0) return;
    const bool kStageG = !(kUnbounded && p.gate_kind == GateKind::kPrecomputedF32);
    auto& raw = s.raw[stage];
    uint64_t* bar = &s.raw_qkg_full[stage];
    Barrier::arrive_and_expect_tx(bar, uint32_t((kStageG ? 3 : 2) * kChunk * kDim * sizeof(bf16)));
    const int row = int(w.row0 + int64_t(c) * kChunk);
    constexpr int kBox = Smem::kRawQkgBoxCols;
#pragma unroll
    for (int b = 0; b < kDim / kBox; ++b) {
      tma_load_3d(&raw.q[b * kChunk * kBox], &p.tmap_q, bar, b * kBox, w.head, row);
      tma_load_3d(&raw.k[b * kChunk * kBox], &p.tmap_k, bar, b * kBox, w.head, row);
      if (kStageG) tma_load_3d(&raw.g[b * kChunk * kBox], &p.tmap_g, bar, b * kBox, w.head, row);
    }
  }

  // Unbounded gates: qd (rows 16-31 of wq) was written relative to 2^r for
  // Mqk; the recurrence needs scale·q·2^G. Each half rescales its own 8 rows,
  // a lane its 4 channels; times a power of two, so exact.
  __device__ void rescale_qd() {
    auto& out = s.prepped[stage];
    const float4 sc = *reinterpret_cast<const float4*>(&s.scratch[stage].ref_scale[4 * lane]);
#pragma unroll
    for (int t = 0; t < kHalf; ++t) {
      uint2* cell = reinterpret_cast<uint2*>(&out.wq[Smem::wq_index(kChunk + half * kHalf + t, 4 * lane)]);
      const float4 x = unpack4(*cell);
      *cell = make_uint2(pack_bf16x2(x.x * sc.x, x.y * sc.y), pack_bf16x2(x.z * sc.z, x.w * sc.w));
    }
  }

  // Asks for the CTA's initial-state rows in L2 (one bulk prefetch by the
  // copy engine, after chunk 0's loads): the recurrence's own loads of them
  // wait for chunk 0 (state_go) and then hit L2.
  __device__ void prefetch_initial_state() const {
    const void* src;
    StateKind kind;
    if (lane != 0 || !initial_state_source(p, w, src, kind)) return;
    const size_t bytes = kind == StateKind::kFloat32 ? sizeof(float) : sizeof(bf16);
    prefetch_l2_bulk(static_cast<const char*>(src) + first_state_row<kBV>(p, w, w.read_slot) * kDim * bytes,
                     uint32_t(kBV * kDim * bytes));
  }

  // Issues the TMA load of chunk c's v rows, this CTA's value block (one
  // thread of half 0), read by the recurrence (rows past the sequence are
  // masked there).
  __device__ void load_v(int c) {
    if (lane != 0 || p.zero_values) return;  // zero_values: the recurrence takes v = 0
    uint64_t* bar = &s.raw_v_full[stage];
    Barrier::arrive_and_expect_tx(bar, uint32_t(kChunk * kBV * sizeof(bf16)));
    constexpr int kBox = Smem::kRawVBoxCols;
#pragma unroll
    for (int b = 0; b < kBV / kBox; ++b)
      tma_load_3d(&s.raw[stage].v[b * kChunk * kBox], &p.tmap_v, bar, w.vblock * kBV + b * kBox, w.head,
                  int(w.row0 + int64_t(c) * kChunk));
  }

  // The bf16 bits of chunk c's beta logit for token `lane` (lanes >= 16 or
  // past the end read token 0's; their b is zeroed at use). Raw bits, no
  // branch: with the conversion at the end of a branch, ptxas waited out the
  // global load right there, every chunk (ncu: long_sb on this line).
  __device__ uint32_t load_beta_bits(int c) const {
    const int t = lane < w.valid_rows(c) ? lane : 0;
    return static_cast<const uint16_t*>(p.beta)[w.beta_offset(p, int64_t(c) * kChunk + t)];
  }

  // kUnbounded: the softplus and precomputed gates (a kernel of their own:
  // the relative-exponent work must not weigh on FlashKDA's gate).
  // kLmqkUnroll: the unroll factor of the L / Mqk k-loop (register pressure
  // differs per instantiation: FwdKernelTraits picks it).
  template <bool kUnbounded, int kLmqkUnroll>
  __device__ __forceinline__ void run() {
    if (stage >= w.num_chunks) return;
    // This pair's first chunk before anything else: the loads of a work
    // item's first chunks are its fill's critical path, and the constants
    // below wait for a global load (timeline probe, session 11: chunk 0's
    // q, k, g landed ~4.4k cycles after setup in the 64x512 cases).
    if (half == 0) {
      load_qkg<kUnbounded>(stage);
      load_v(stage);
      if (stage == 0) prefetch_initial_state();
    }
    // Per-head constants: this lane's 4 key channels (dt_bias absent: zeros).
    const float a = p.A_log != nullptr ? expf(p.A_log[w.head]) : 0.f;
    const float4 dtb = p.dt_bias != nullptr
                           ? *reinterpret_cast<const float4*>(p.dt_bias + w.head * kDim + 4 * lane)
                           : make_float4(0.f, 0.f, 0.f, 0.f);
    // lower bound: sigmoid(a·(g + dt_bias)) = 1 / (1 + 2^(gate_mul·g + bias2)), one FFMA before the ex2
    gate_mul = p.gate_kind == GateKind::kLowerBound ? -kLog2eF * a : kLog2eF;
    neg_a = -a;
    bias2[0] = gate_mul * dtb.x;
    bias2[1] = gate_mul * dtb.y;
    bias2[2] = gate_mul * dtb.z;
    bias2[3] = gate_mul * dtb.w;
    run_chunks<kUnbounded, kLmqkUnroll>();
  }

  template <bool kUnbounded, int kLmqkUnroll>
  __device__ __forceinline__ void run_chunks() {
    constexpr bool kRelative = kUnbounded;
    const int first = stage;
    const int gid = lane >> 2, qid = lane & 3;
    const int t0 = half * kHalf;  // first token of this half

    uint32_t beta_next = load_beta_bits(first);

    for (int c = first, it = 0; c < w.num_chunks; c += kStages, ++it) {
      // Opaque to the compiler from here on: otherwise it hoists the ~50
      // lane-dependent tile offsets out of the loop and spills them (bv128:
      // 280 bytes once U0 left the prep). Recomputing them costs a few
      // integer instructions per chunk.
      asm volatile("" : "+r"(lane));
      const int valid = w.valid_rows(c);
      const uint32_t phase = it & 1;
      // b_t = sigmoid(beta_t) for token t = lane (0 past the end).
      const float b_mine = lane < valid ? fast_sigmoid(__uint_as_float(beta_next << 16)) : 0.f;
      const int next = c + kStages;
      auto& scr = s.scratch[stage];

      wait_barrier(&s.raw_qkg_full[stage], phase);
      // Chunk 0's rows are in: the recurrence may now load the initial state
      // (held back so that chunk 0's loads, the fill's critical path, do not
      // queue behind its 64 KiB).
      if (c == 0 && half == 0 && lane == 0) Barrier::arrive(&s.state_go);
      if constexpr (kTimeline) if (c == 0 && half == 0) tl_mark(lane, kTlPrepLoaded0);

      float exp_gamma[4], mqk_diag;
      if (valid == kChunk) {
        elementwise<true, kUnbounded>(c, valid, it, exp_gamma, mqk_diag);
      } else {
        elementwise<false, kUnbounded>(c, valid, it, exp_gamma, mqk_diag);
      }
      sync_pair();  // #2: scratch rows complete, raw q/k/g consumed by both halves
      // The recurrence has released chunk c - 4 (elementwise waited for it),
      // its raw v (read for U) included: chunk c's can take its place.
      if (it > 0 && half == 0) load_v(c);

      // Prefetch the chunk after next's q, k, g.
      if (next < w.num_chunks) {
        if (half == 0) load_qkg<kUnbounded>(next);
        beta_next = load_beta_bits(next);
      }

      // ---- this half's n-tile (keys 8h..8h+7) of L and Mqk ----
      // L and Mqk share ki (B): two chains of 8 dependent HMMAs.
      FragC l_acc, m_acc;
      {
        // Addresses of k-step 0, stepped by XOR (swz128_step / sw128_step).
        const LaneRowCol ar = lane_a_order(lane);
        const int b_row = 8 * half + (lane & 7), b_col = lane & 8;  // x2: keys 8h..8h+7, both k halves
        const uint32_t a_kd0 = smem_u32(&scr.kd[swz128(ar.row, ar.col)]);
        const uint32_t a_qd0 = smem_u32(&s.prepped[stage].wq[Smem::wq_index(kChunk + ar.row, ar.col)]);
        const uint32_t b_ki0 = smem_u32(&scr.ki[swz128(b_row, b_col)]);
#pragma unroll kLmqkUnroll  // (fully unrolled, ptxas keeps all eight steps' addresses live and spills)
        for (int ks = 0; ks < kDim / 16; ++ks) {
          const uint32_t a_kd = swz128_step(a_kd0, ks), b_ki = swz128_step(b_ki0, ks);
          FragA a_kd_f, a_qd;
          FragB b;
          ldsm_x4_at(a_kd, a_kd_f.x);
          ldsm_x4_at(sw128_step<2 * kChunk>(a_qd0, ks), a_qd.x);
          ldsm_x2_at(b_ki, b.x);
          mma(l_acc, a_kd_f, b);
          mma(m_acc, a_qd, b);
        }
      }
      {
        const float b_lo = __shfl_sync(0xffffffffu, b_mine, gid);
        const float b_hi = __shfl_sync(0xffffffffu, b_mine, gid + 8);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int i = gid + (e >> 1) * 8, j = t0 + 2 * qid + (e & 1);
          scr.lmat[i * kChunk + j] = j < i ? l_acc.x[e] * (e < 2 ? b_lo : b_hi) : 0.f;
          if (j > i) m_acc.x[e] = 0.f;
          if (j == i) m_acc.x[e] = mqk_diag;  // lane 4r + r / 2 holds both
        }
      }
      sync_pair();  // #3: L complete; ki no longer needed (its space takes Y and INV·diag(b))
      if constexpr (kRelative) rescale_qd();  // Mqk has read the relative qd

      // ---- INV = (I + L)^-1 by 8x8 blocks: [[Y1, 0], [X21, Y2]] ----
      // Y_h = (I + L_hh)^-1 by forward substitution, column j = lane % 8, in fp32.
      {
        const int j = lane & 7;
        float y[kHalf];
        float lblk[kHalf][kHalf];
        load_block8(&scr.lmat[t0 * kChunk + t0], kChunk, lblk);
#pragma unroll
        for (int i = 0; i < kHalf; ++i) {
          float acc = i == j ? 1.f : 0.f;
#pragma unroll
          for (int m = 0; m < i; ++m) acc -= lblk[i][m] * y[m];
          y[i] = acc;
        }
        if (lane < kHalf) {
#pragma unroll
          for (int i = 0; i < kHalf; ++i) scr.solve.yblk[half][i][j] = y[i];
        }
      }
      sync_pair();  // #4: Y1, Y2 complete
      {
        // X21 = -Y2·(L21·Y1): this half's columns j = 4h + lane % 4, row r =
        // lane / 4 per lane; T = L21·Y1 entry by entry, then its column from
        // the lanes that hold it (T[m][j] is in lane 4m + lane % 4).
        const int r = lane >> 2, j = 4 * half + (lane & 3);
        float row[kHalf];
        load_row8(&scr.lmat[(kHalf + r) * kChunk], row);  // L21 row r
        float t_rj = 0.f;
#pragma unroll
        for (int m = 0; m < kHalf; ++m) t_rj = fmaf(row[m], scr.solve.yblk[0][m][j], t_rj);
        load_row8(&scr.solve.yblk[1][r][0], row);  // Y2 row r
        float x_rj = 0.f;
#pragma unroll
        for (int m = 0; m < kHalf; ++m) x_rj = fmaf(row[m], __shfl_sync(0xffffffffu, t_rj, 4 * m + (lane & 3)), x_rj);
        write_invb(kHalf + r, j, -x_rj * __shfl_sync(0xffffffffu, b_mine, j));
        // Diagonal block Y_h·diag(b): lane writes rows 2q, 2q + 1 (q = lane / 8) of column lane % 8.
        const int jd = lane & 7, q = lane >> 3;
        const float b_d = __shfl_sync(0xffffffffu, b_mine, t0 + jd);
        write_invb(t0 + 2 * q, t0 + jd, scr.solve.yblk[half][2 * q][jd] * b_d);
        write_invb(t0 + 2 * q + 1, t0 + jd, scr.solve.yblk[half][2 * q + 1][jd] * b_d);
        // The zero upper-right block, hi and lo: 16 bytes per row (half 1, lanes 0-15).
        if (half == 1 && lane < 2 * kHalf) {
          bf16* tile = lane < kHalf ? scr.solve.invb.hi : scr.solve.invb.lo;
          *reinterpret_cast<uint4*>(&tile[swz16(lane & 7, kHalf)]) = make_uint4(0u, 0u, 0u, 0u);
        }
      }
      // INV·diag(b) is read by the recurrence warps only (U = INV·diag(b)·(v −
      // kd·Sᵀ)), after the hand-off below: no pair barrier of its own.
      auto& out = s.prepped[stage];
      // 2^Γ and Mqk (this half's n-tile).
      if (half == 0) {
        *reinterpret_cast<float4*>(&out.decay[4 * lane]) =
            make_float4(exp_gamma[0], exp_gamma[1], exp_gamma[2], exp_gamma[3]);
      }
      {
        const int col = t0 + 2 * qid;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const float x0 = m_acc.x[2 * r], x1 = m_acc.x[2 * r + 1];
          const uint32_t hi = pack_bf16x2(x0, x1);
          const float2 hf = unpack_bf16x2(hi);
          *reinterpret_cast<uint32_t*>(&out.mqk[swz16(gid + 8 * r, col)]) = hi;
          *reinterpret_cast<uint32_t*>(&out.mqk_lo[swz16(gid + 8 * r, col)]) = pack_bf16x2(x0 - hf.x, x1 - hf.y);
        }
      }
      // #5: both halves' stores done before the hand-off. bar.arrive alone orders them under PTX's
      // memory model, but compute-sanitizer's racecheck does not credit it (78 hazards without this).
      sync_pair();
      named_barrier_arrive(kPreppedFullBarrier + stage, kPreppedFullThreads<kBV>);
      if constexpr (kTimeline) if (c == 0 && half == 0) tl_mark(lane, kTlPrepHanded0);
    }
  }

 private:
  // This lane's 4 channels (packed bf16) of raw row t; rows past the end read as 0.
  template <bool kFull>
  __device__ uint2 load_row4(const bf16* tile, int t, int valid) const {
    const uint2 bits = *reinterpret_cast<const uint2*>(&tile[Smem::raw_index(t, 4 * lane)]);
    if (kFull) return bits;
    return t < valid ? bits : make_uint2(0u, 0u);
  }
  __device__ static float4 unpack4(uint2 bits) {
    const float2 lo = unpack_bf16x2(bits.x), hi = unpack_bf16x2(bits.y);
    return make_float4(lo.x, lo.y, hi.x, hi.y);
  }
  // This lane's 4 channels as bf16, one 8-byte cell.
  __device__ static uint2 pack4(const float (&x)[4]) {
    return make_uint2(pack_bf16x2(x[0], x[1]), pack_bf16x2(x[2], x[3]));
  }
  // Stores this lane's 4 channels (one 8-byte cell) of a row as bf16.
  __device__ static void store4_at(bf16* cell, const float (&x)[4]) { *reinterpret_cast<uint2*>(cell) = pack4(x); }
  // This lane's 4 channels (packed bf16) into row t of a swz128 [16][128] scratch tile.
  __device__ void store_bits4(bf16* tile, int t, uint2 bits) const {
    *reinterpret_cast<uint2*>(&tile[swz128(t, 4 * lane)]) = bits;
  }
  // 8 consecutive fp32 (16-byte aligned) into registers.
  __device__ static void load_row8(const float* src, float (&row)[kHalf]) {
    const float4 a = *reinterpret_cast<const float4*>(src);
    const float4 b = *reinterpret_cast<const float4*>(src + 4);
    row[0] = a.x; row[1] = a.y; row[2] = a.z; row[3] = a.w;
    row[4] = b.x; row[5] = b.y; row[6] = b.z; row[7] = b.w;
  }
  // An 8x8 fp32 block (row stride `ld` floats, 16-byte aligned rows) into registers.
  __device__ static void load_block8(const float* src, int ld, float (&blk)[kHalf][kHalf]) {
#pragma unroll
    for (int r = 0; r < kHalf; ++r) {
      const float4 a = *reinterpret_cast<const float4*>(src + r * ld);
      const float4 b = *reinterpret_cast<const float4*>(src + r * ld + 4);
      blk[r][0] = a.x; blk[r][1] = a.y; blk[r][2] = a.z; blk[r][3] = a.w;
      blk[r][4] = b.x; blk[r][5] = b.y; blk[r][6] = b.z; blk[r][7] = b.w;
    }
  }
  // INV·diag(b)[i][j] as a bf16 hi + lo pair.
  __device__ void write_invb(int i, int j, float val) const {
    auto& scr = s.scratch[stage];
    const bf16 hi = __float2bfloat16_rn(val);
    scr.solve.invb.hi[swz16(i, j)] = hi;
    scr.solve.invb.lo[swz16(i, j)] = __float2bfloat16_rn(val - __bfloat162float(hi));
  }
};

}  // namespace flash_kda::sm90
