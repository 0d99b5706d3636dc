// The chunked KDA forward in fp32: the algorithm the GPU kernels use
// (docs/kda.md, "The chunked form"), written as plain C++.
//
// Each sequence is cut into chunks of C = kChunk tokens. Inside a chunk all
// work is token-parallel matrix algebra; only the state S carries from one
// chunk to the next. Gates are applied in base 2 (pre-multiplied by log2(e),
// exp2), which is what the kernels do.
//
// Per chunk, with G = inclusive cumsum of the gate per channel and Γ = G_last:
//   kd = k 2^G,  qd = scale q 2^G,  ki = k 2^-G,  kr = k 2^(Γ-G)
//   (L and Mqk use kd, qd, ki rescaled by a per-channel 2^∓r; see reference_exponent)
//   L   = strictly_lower(kd ki^T), row t scaled by b_t
//   Mqk = lower(qd ki^T)                       (diagonal included)
//   A   = (I + L)^-1
//   U   = A (b * (v - kd S^T))
//   o   = qd S^T + Mqk U
//   S   = S * 2^Γ[None, :] + U^T kr
//
// Why it equals the recurrence: within a chunk the state after token t is
// S_t = (S_0 + sum_{j<=t} u_j ki_j^T) diag(2^G_t), so the delta-rule
// corrections u_t satisfy u_t + b_t sum_{j<t} (kd_t . ki_j) u_j
// = b_t (v_t - S_0 kd_t), i.e. (I + L) U = b * (v - kd S_0^T).
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "common/constants.h"
#include "cpu/bf16.h"
#include "cpu/cpu_backend.h"
#include "cpu/sequence_plan.h"

namespace flash_kda::cpu {
namespace {

constexpr int C = kChunk;
constexpr int K = kHeadDim;
constexpr int V = kHeadDim;

// Everything one chunk needs, for one (sequence, head). Rows past the end of
// the sequence (tail chunk) are padding: gate 0, q = k = 0, b = 0, v = 0,
// which makes them contribute nothing, so the math below can always run
// over all C rows.
struct ChunkOperands {
  float q[C][K], k[C][K];  // L2-normalised
  float v[C][V];
  float b[C];              // sigmoid(beta)
  float G[C][K];           // base-2 inclusive cumsum of the gate
  float decay_total[K];    // 2^Γ: decay of the whole chunk per channel
  float kd[C][K], qd[C][K], kr[C][K];      // against the state: 2^G, 2^(Γ-G) <= 1
  float kd_rel[C][K], qd_rel[C][K], ki_rel[C][K];  // intra-chunk: relative to 2^ref
  float L[C][C];           // strictly lower, rows scaled by b
  float Mqk[C][C];         // lower, diagonal included
  float A[C][C];           // (I + L)^-1, unit lower triangular
  float W[C][V];           // b * (v - kd S^T)
  float U[C][V];           // A W: the delta-rule corrections
  float o[C][V];           // the chunk's outputs
};

// Per-head constants.
struct HeadParams {
  GateMode mode;
  float a;                  // exp(A_log[h])
  float dt_bias[K];         // zeros when absent
  float lower_bound_log2;   // lower_bound * log2(e): gates in base 2
  float min_gate_log2;      // kMinTokenLogDecay * log2(e): clamp of the unbounded modes
  float scale;
};

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// The base-2 log decay of one channel from its gate input x (g as stored).
float gate_log2(const HeadParams& hp, float x, float bias) {
  switch (hp.mode) {
    case GateMode::kSoftplus: {
      const float y = x + bias;
      const float softplus = std::max(y, 0.0f) + std::log1p(std::exp(-std::abs(y)));
      return std::max(-hp.a * softplus * static_cast<float>(kLog2e), hp.min_gate_log2);
    }
    case GateMode::kPrecomputed:
      return std::max(x * static_cast<float>(kLog2e), hp.min_gate_log2);
    default:
      return hp.lower_bound_log2 * sigmoid(hp.a * (x + bias));
  }
}

// g[i] as float, bf16 or (precomputed gates) fp32.
float load_gate_input(const TensorRef& g, int64_t i) {
  if (g.dtype == DType::kFloat32) return static_cast<const float*>(g.data)[i];
  return bf16_to_float(static_cast<const uint16_t*>(g.data)[i]);
}

// Loads K bf16 values and L2-normalises them: x / sqrt(sum x^2 + eps).
void load_normalised(const uint16_t* src, float* dst) {
  float sum_sq = 0;
  for (int c = 0; c < K; ++c) {
    dst[c] = bf16_to_float(src[c]);
    sum_sq += dst[c] * dst[c];
  }
  const float inv_norm = 1.0f / std::sqrt(sum_sq + static_cast<float>(kL2NormEps));
  for (int c = 0; c < K; ++c) dst[c] *= inv_norm;
}

// Reads tokens [row0, row0 + len) of head h into the chunk (len <= C) and
// computes the base-2 gate and its inclusive cumsum G per channel.
void gate_and_cumsum(const FwdParams& p, const HeadParams& hp, int64_t H, int64_t T, int64_t h,
                     int64_t row0, int len, ChunkOperands& ch) {
  const auto* q = static_cast<const uint16_t*>(p.q.data);
  const auto* k = static_cast<const uint16_t*>(p.k.data);
  const auto* v = static_cast<const uint16_t*>(p.v.data);
  const auto* beta = static_cast<const uint16_t*>(p.beta.data);

  float running[K] = {};  // G of the previous row
  for (int t = 0; t < C; ++t) {
    if (t < len) {
      const int64_t row = row0 + t;
      const int64_t qk = (row * H + h) * K;
      load_normalised(q + qk, ch.q[t]);
      load_normalised(k + qk, ch.k[t]);
      for (int c = 0; c < V; ++c) ch.v[t][c] = bf16_to_float(v[(row * H + h) * V + c]);
      ch.b[t] = sigmoid(bf16_to_float(beta[beta_offset(p.beta, T, row, h)]));
      for (int c = 0; c < K; ++c) running[c] += gate_log2(hp, load_gate_input(p.g, qk + c), hp.dt_bias[c]);
    } else {  // padding: no decay, no key/query/value, no write
      for (int c = 0; c < K; ++c) ch.q[t][c] = ch.k[t][c] = 0.0f;
      for (int c = 0; c < V; ++c) ch.v[t][c] = 0.0f;
      ch.b[t] = 0.0f;
    }
    for (int c = 0; c < K; ++c) ch.G[t][c] = running[c];
  }
  for (int c = 0; c < K; ++c) ch.decay_total[c] = std::exp2(running[c]);
}

float dot(const float* x, const float* y) {
  float s = 0;
  for (int c = 0; c < K; ++c) s += x[c] * y[c];
  return s;
}

// Base-2 reference exponent of channel c for the intra-chunk products.
// L and Mqk need 2^(G_i - G_j), j <= i, factored as 2^(G_i - r) * 2^(r - G_j).
// Lower-bounded gates: r = 0 (chunk start); the factors stay within 2^±115
// for lower_bound >= -5 and C = 16. Unbounded gates (clamped at
// kMinTokenLogDecay per token): r = ceil(G at the middle of the chunk), so
// each factor spans only half a chunk, 8 tokens: within 2^±116.4. An integer
// r keeps every rescaling by 2^r exact (the GPU kernel relies on it).
float reference_exponent(const HeadParams& hp, const ChunkOperands& ch, int c) {
  if (hp.mode == GateMode::kLowerBound) return 0.0f;
  return std::ceil(ch.G[C / 2 - 1][c]);
}

// The decayed keys/queries and the two intra-chunk score matrices. Every
// product in L and Mqk pairs a 2^(G_i - r) with a 2^(r - G_j) of an earlier
// (or the same) row, so their entries stay <= |k||q| in magnitude.
void build_chunk_operands(const HeadParams& hp, ChunkOperands& ch) {
  for (int c = 0; c < K; ++c) {
    const float r = reference_exponent(hp, ch, c);
    for (int t = 0; t < C; ++t) {
      const float G = ch.G[t][c];
      const float up = std::exp2(G - r), down = std::exp2(r - G), abs_up = std::exp2(G);
      ch.kd_rel[t][c] = ch.k[t][c] * up;
      ch.qd_rel[t][c] = hp.scale * ch.q[t][c] * up;
      ch.ki_rel[t][c] = ch.k[t][c] * down;
      ch.kd[t][c] = ch.k[t][c] * abs_up;
      ch.qd[t][c] = hp.scale * ch.q[t][c] * abs_up;
      ch.kr[t][c] = ch.k[t][c] * std::exp2(ch.G[C - 1][c] - G);
    }
  }
  for (int i = 0; i < C; ++i)
    for (int j = 0; j < C; ++j) {
      ch.L[i][j] = j < i ? ch.b[i] * dot(ch.kd_rel[i], ch.ki_rel[j]) : 0.0f;
      ch.Mqk[i][j] = j <= i ? dot(ch.qd_rel[i], ch.ki_rel[j]) : 0.0f;
    }
}

// A = (I + L)^-1 for strictly lower L, by forward substitution on
// (I + L) A = I: A[i][j] = delta_ij - sum_{j<=m<i} L[i][m] A[m][j].
void invert_unit_lower(const float (&L)[C][C], float (&A)[C][C]) {
  for (int i = 0; i < C; ++i)
    for (int j = 0; j < C; ++j) {
      if (j > i) {
        A[i][j] = 0.0f;
        continue;
      }
      float s = i == j ? 1.0f : 0.0f;
      for (int m = j; m < i; ++m) s -= L[i][m] * A[m][j];
      A[i][j] = s;
    }
}

// y += alpha * x over a value row.
void axpy(float alpha, const float* x, float* y) {
  for (int c = 0; c < V; ++c) y[c] += alpha * x[c];
}

// One chunk against the carried state. The state is kept key-major here,
// St[k][v] = S[v][k], so that every heavy loop is an axpy over a contiguous
// value row (vectorises without reassociating float sums).
// Computes ch.o for all C rows (padding rows are never stored by the caller).
void chunk_step(ChunkOperands& ch, float* St) {
  // W = b * (v - kd S^T)
  for (int t = 0; t < C; ++t) {
    for (int c = 0; c < V; ++c) ch.W[t][c] = ch.v[t][c];
    for (int c = 0; c < K; ++c) axpy(-ch.kd[t][c], St + c * V, ch.W[t]);
    for (int c = 0; c < V; ++c) ch.W[t][c] *= ch.b[t];
  }
  // U = A W
  for (int t = 0; t < C; ++t) {
    for (int c = 0; c < V; ++c) ch.U[t][c] = 0.0f;
    for (int j = 0; j <= t; ++j) axpy(ch.A[t][j], ch.W[j], ch.U[t]);
  }
  // o = qd S^T + Mqk U   (uses the state before this chunk's update)
  for (int t = 0; t < C; ++t) {
    for (int c = 0; c < V; ++c) ch.o[t][c] = 0.0f;
    for (int c = 0; c < K; ++c) axpy(ch.qd[t][c], St + c * V, ch.o[t]);
    for (int j = 0; j <= t; ++j) axpy(ch.Mqk[t][j], ch.U[j], ch.o[t]);
  }
  // S = S * 2^Γ[None, :] + U^T kr
  for (int c = 0; c < K; ++c) {
    float* row = St + c * V;
    for (int x = 0; x < V; ++x) row[x] *= ch.decay_total[c];
    for (int t = 0; t < C; ++t) axpy(ch.kr[t][c], ch.U[t], row);
  }
}

// Stores the key-major state St as state[row, h] of `dst` (value-major).
void store_state(const TensorRef& dst, int64_t row, int64_t H, int64_t h, const float* St) {
  const int64_t offset = (row * H + h) * V * K;
  for (int x = 0; x < V; ++x)
    for (int c = 0; c < K; ++c) store_element(dst, offset + x * K + c, St[c * V + x]);
}

// One (sequence, head): tokens [begin, end) of the flattened [B*T] axis.
void run_head(const FwdParams& p, const SequencePlan& plan, int64_t h, int64_t H, int64_t T) {
  const int64_t begin = plan.begin, end = plan.end;
  if (plan.padding) {  // padding sequence: zero output rows, no state read or written
    for (int64_t row = begin; row < end; ++row)
      for (int x = 0; x < V; ++x) store_element(p.out, (row * H + h) * V + x, 0.0);
    return;
  }
  HeadParams hp;
  hp.mode = p.gate_mode;
  hp.a = p.A_log.present() ? std::exp(static_cast<float>(load_element(p.A_log, h))) : 0.0f;
  for (int c = 0; c < K; ++c)
    hp.dt_bias[c] = p.dt_bias.present() ? static_cast<float>(load_element(p.dt_bias, h * K + c)) : 0.0f;
  hp.lower_bound_log2 = static_cast<float>(p.lower_bound * kLog2e);
  hp.min_gate_log2 = static_cast<float>(kMinTokenLogDecay * kLog2e);
  hp.scale = static_cast<float>(p.scale);

  // Read the whole initial state before writing anything: final_state may be
  // the very same tensor.
  std::vector<float> St(K * V, 0.0f);  // key-major: St[k * V + v] = state[slot, h, v, k]
  if (plan.read_slot >= 0) {
    const int64_t state_offset = (plan.read_slot * H + h) * V * K;
    for (int x = 0; x < V; ++x)
      for (int c = 0; c < K; ++c)
        St[c * V + x] = static_cast<float>(load_element(p.initial_state, state_offset + x * K + c));
  }

  // A checkpoint every `chunks_per_checkpoint` full chunks (interval is a multiple of C).
  const int64_t chunks_per_checkpoint = plan.checkpoint_row0 >= 0 ? p.checkpoint_interval / C : 0;
  auto ch = std::make_unique<ChunkOperands>();
  int64_t chunk = 0;
  for (int64_t row0 = begin; row0 < end; row0 += C, ++chunk) {
    const int len = static_cast<int>(std::min<int64_t>(C, end - row0));
    gate_and_cumsum(p, hp, H, T, h, row0, len, *ch);
    build_chunk_operands(hp, *ch);
    invert_unit_lower(ch->L, ch->A);
    chunk_step(*ch, St.data());
    // Stored in out's dtype: bf16 under the fwd contract, rounded once, here.
    // (The tests also pass an fp32 out to see the fp32 algorithm's own error.)
    for (int t = 0; t < len; ++t)
      for (int x = 0; x < V; ++x) store_element(p.out, ((row0 + t) * H + h) * V + x, ch->o[t][x]);
    if (chunks_per_checkpoint > 0 && len == C && (chunk + 1) % chunks_per_checkpoint == 0)
      store_state(p.checkpoints, plan.checkpoint_row0 + (chunk + 1) / chunks_per_checkpoint - 1, H, h,
                  St.data());
  }

  if (plan.write_slot >= 0) store_state(p.final_state, plan.write_slot, H, h, St.data());
}

}  // namespace

void chunked_forward(const FwdParams& p, const FwdShape& shape) {
  const int64_t H = shape.heads;
  const int64_t count = shape.num_sequences * H;
  // (sequence, head) pairs are independent; each touches only its own slice
  // of out, its own state slots and checkpoint rows (validated).
#if defined(_OPENMP)
#pragma omp parallel for schedule(dynamic, 1)
#endif
  for (int64_t i = 0; i < count; ++i) {
    const int64_t n = i / H, h = i % H;
    run_head(p, plan_sequence(p, shape, n), h, H, shape.tokens);
  }
}

}  // namespace flash_kda::cpu
