// The float64 oracle: the KDA recurrence of docs/kda.md, one token at a time.
//
// For every sequence n and head h the state S (V x K, "value-major", as
// final_state[n, h, v, k]) starts from initial_state (or zeros) and, per token:
//
//   a      = exp(A_log[h])
//   gate_c = lower_bound * sigmoid(a * (g_c + dt_bias[h, c]))     c = 0..K-1
//            (or -a * softplus(g_c + dt_bias[h, c]), or g_c: see GateMode)
//   b      = sigmoid(beta)
//   q, k   = x / sqrt(sum(x^2) + 1e-6)                            L2 normalisation
//   S      = S * exp(gate)[None, :]                               decay key channels
//   S     += b * (v - S k) k^T                                    delta rule
//   o      = scale * S q
//
// Each value row S[v, :] evolves on its own (it only meets k, gate, b and
// v[v]), so the update is written row by row.
#include <algorithm>
#include <cmath>
#include <vector>

#include "common/constants.h"
#include "cpu/bf16.h"
#include "cpu/cpu_backend.h"
#include "cpu/sequence_plan.h"

namespace flash_kda::cpu {
namespace {

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// log(1 + e^x) without overflow for large x or loss for very negative x.
double softplus(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x))); }

// The natural-log decay of one channel, exactly (no clamping: this is the oracle).
double log_decay(const FwdParams& p, double a, double g, double bias) {
  switch (p.gate_mode) {
    case GateMode::kSoftplus: return -a * softplus(g + bias);
    case GateMode::kPrecomputed: return g;
    default: return p.lower_bound * sigmoid(a * (g + bias));
  }
}

// Reads `n` consecutive elements starting at flat index `offset`.
void load_row(const TensorRef& t, int64_t offset, int64_t n, double* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = load_element(t, offset + i);
}

void l2_normalise(std::vector<double>& x) {
  double sum_sq = 0;
  for (double e : x) sum_sq += e * e;
  const double inv_norm = 1.0 / std::sqrt(sum_sq + kL2NormEps);
  for (double& e : x) e *= inv_norm;
}

// Runs one (sequence, head): tokens [begin, end) of the flattened [B*T] token axis.
void run_head(const FwdParams& p, const SequencePlan& plan, int64_t h, int64_t H, int64_t T) {
  const int64_t K = kHeadDim, V = kHeadDim;
  const int64_t begin = plan.begin, end = plan.end;
  if (plan.padding) {  // padding sequence: zero output rows, no state read or written
    for (int64_t t = begin; t < end; ++t)
      for (int64_t r = 0; r < V; ++r) store_element(p.out, (t * H + h) * V + r, 0.0);
    return;
  }

  // Read the whole initial state before anything is written: final_state may
  // be the very same tensor.
  std::vector<double> S(V * K, 0.0);
  if (plan.read_slot >= 0) load_row(p.initial_state, (plan.read_slot * H + h) * V * K, V * K, S.data());

  const double a = p.A_log.present() ? std::exp(load_element(p.A_log, h)) : 0.0;
  std::vector<double> dt_bias(K, 0.0);  // absent: zeros
  if (p.dt_bias.present()) load_row(p.dt_bias, h * K, K, dt_bias.data());

  std::vector<double> q(K), k(K), g(K), v(V), decay(K);
  for (int64_t t = begin; t < end; ++t) {
    const int64_t qk_offset = (t * H + h) * K;
    const int64_t v_offset = (t * H + h) * V;
    load_row(p.q, qk_offset, K, q.data());
    load_row(p.k, qk_offset, K, k.data());
    load_row(p.g, qk_offset, K, g.data());
    load_row(p.v, v_offset, V, v.data());
    const double b = sigmoid(load_element(p.beta, beta_offset(p.beta, T, t, h)));
    l2_normalise(q);
    l2_normalise(k);
    for (int64_t c = 0; c < K; ++c)
      decay[c] = std::exp(log_decay(p, a, g[c], dt_bias[c]));

    for (int64_t r = 0; r < V; ++r) {
      double* row = &S[r * K];
      for (int64_t c = 0; c < K; ++c) row[c] *= decay[c];           // S = S * exp(gate)
      double sk = 0;
      for (int64_t c = 0; c < K; ++c) sk += row[c] * k[c];          // (S k)[r]
      const double delta = b * (v[r] - sk);
      for (int64_t c = 0; c < K; ++c) row[c] += delta * k[c];       // S += b (v - S k) k^T
      double sq = 0;
      for (int64_t c = 0; c < K; ++c) sq += row[c] * q[c];          // (S q)[r]
      store_element(p.out, v_offset + r, p.scale * sq);
    }
    // Checkpoint i (1-based) = the state after token i * interval of the sequence.
    const int64_t done = t + 1 - begin;
    if (plan.checkpoint_row0 >= 0 && done % p.checkpoint_interval == 0) {
      const int64_t row = plan.checkpoint_row0 + done / p.checkpoint_interval - 1;
      for (int64_t i = 0; i < V * K; ++i) store_element(p.checkpoints, (row * H + h) * V * K + i, S[i]);
    }
  }

  if (plan.write_slot >= 0)
    for (int64_t i = 0; i < V * K; ++i) store_element(p.final_state, (plan.write_slot * H + h) * V * K + i, S[i]);
}

}  // namespace

void reference_forward(const FwdParams& p, const FwdShape& shape) {
  const int64_t H = shape.heads;
  // With state pools no sequence writes a slot another one reads (validated),
  // so the order of the sequences does not matter.
  for (int64_t n = 0; n < shape.num_sequences; ++n) {
    const SequencePlan plan = plan_sequence(p, shape, n);
    for (int64_t h = 0; h < H; ++h) run_head(p, plan, h, H, shape.tokens);
  }
}

}  // namespace flash_kda::cpu
