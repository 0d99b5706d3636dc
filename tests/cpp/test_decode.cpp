// The decode step over a state pool, on the host (src/api/decode.cpp,
// src/cpu/reference_decode.cpp, the decode block of src/api/validate.cpp):
//  * every refusal names its argument and writes nothing;
//  * host `decode` equals the float64 oracle rounded once into the caller's dtypes;
//  * padding rows give zero outputs, slots not named stay bit-identical;
//  * prefill of T - t tokens then decode of t equals prefill of T (float64).
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "test_util.h"

namespace kda_test {
namespace {

using flash_kda::DecodeParams;
using flash_kda::ErrorKind;

// Element i of an int32/int64 host tensor (HostTensor::get reads floats only).
void put_index(HostTensor& t, int64_t i, int64_t value) {
  if (t.dtype() == DType::kInt32)
    reinterpret_cast<int32_t*>(t.data())[i] = static_cast<int32_t>(value);
  else
    reinterpret_cast<int64_t*>(t.data())[i] = value;
}
int64_t get_index(const HostTensor& t, int64_t i) {
  return t.dtype() == DType::kInt32 ? reinterpret_cast<const int32_t*>(t.data())[i]
                                    : reinterpret_cast<const int64_t*>(t.data())[i];
}

// ---------------------------------------------------------------------------
// One decode call's buffers. Fixed layout: N sequences of t tokens. Packed:
// seqlens given (1..8 each), tensors [1, total, H, *] and cu_seqlens.
struct DecodeSpec {
  int64_t N = 3, t = 2, H = 2, P = 6;
  std::vector<int64_t> seqlens;     // non-empty: packed layout
  std::vector<int64_t> slots;       // empty: a random permutation of distinct slots
  DType state = DType::kFloat32;
  DType indices = DType::kInt64;
  DType cu = DType::kInt64;
  DType out = DType::kBFloat16;
  double lower_bound = -5.0;
  double scale = 1.0 / std::sqrt(static_cast<double>(kDim));
};

struct DecodeProblem {
  DecodeSpec spec;
  int64_t N = 0, total = 0;
  HostTensor q, k, v, g, beta, out, A_log, dt_bias, state, state_indices, cu_seqlens;

  explicit DecodeProblem(DecodeSpec s, uint64_t seed = fresh_seed()) : spec(std::move(s)) {
    const int64_t H = spec.H;
    std::vector<int64_t> lead;
    if (spec.seqlens.empty()) {
      N = spec.N;
      total = N * spec.t;
      lead = {N, spec.t};
    } else {
      N = static_cast<int64_t>(spec.seqlens.size());
      total = std::accumulate(spec.seqlens.begin(), spec.seqlens.end(), int64_t(0));
      lead = {1, total};
      cu_seqlens = HostTensor(spec.cu, {N + 1});
      int64_t acc = 0;
      put_index(cu_seqlens, 0, 0);
      for (int64_t i = 0; i < N; ++i) put_index(cu_seqlens, i + 1, acc += spec.seqlens[i]);
    }
    auto dims = [&](std::vector<int64_t> tail) {
      std::vector<int64_t> d = lead;
      d.insert(d.end(), tail.begin(), tail.end());
      return d;
    };
    q = HostTensor(DType::kBFloat16, dims({H, kDim}));
    k = HostTensor(DType::kBFloat16, dims({H, kDim}));
    v = HostTensor(DType::kBFloat16, dims({H, kDim}));
    g = HostTensor(DType::kBFloat16, dims({H, kDim}));
    beta = HostTensor(DType::kBFloat16, dims({H}));
    out = HostTensor(spec.out, dims({H, kDim}));
    A_log = HostTensor(DType::kFloat32, {H});
    dt_bias = HostTensor(DType::kFloat32, {H, kDim});
    state = HostTensor(spec.state, {spec.P, H, kDim, kDim});
    state_indices = HostTensor(spec.indices, {N});

    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_real_distribution<double> uniform(-1.0, 1.0);
    for (HostTensor* t : {&q, &k, &v, &beta, &state})
      for (int64_t i = 0; i < t->numel(); ++i) t->set(i, normal(rng));
    for (int64_t i = 0; i < g.numel(); ++i) g.set(i, 8.0 * uniform(rng));
    for (int64_t i = 0; i < A_log.numel(); ++i) A_log.set(i, uniform(rng));
    for (int64_t i = 0; i < dt_bias.numel(); ++i) dt_bias.set(i, 4.0 * uniform(rng));
    std::vector<int64_t> slots = spec.slots;
    if (slots.empty()) {
      std::vector<int64_t> perm(spec.P);
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      slots.assign(perm.begin(), perm.begin() + N);
    }
    for (int64_t i = 0; i < N; ++i) put_index(state_indices, i, slots[i]);
    out.poison();
  }

  DecodeParams params() const {
    DecodeParams p;
    p.q = q.ref();
    p.k = k.ref();
    p.v = v.ref();
    p.g = g.ref();
    p.beta = beta.ref();
    p.scale = spec.scale;
    p.out = out.ref();
    p.A_log = A_log.ref();
    p.dt_bias = dt_bias.ref();
    p.lower_bound = spec.lower_bound;
    p.state = state.ref();
    p.state_indices = state_indices.ref();
    p.cu_seqlens = cu_seqlens.ref();
    return p;
  }

  int64_t slot(int64_t n) const { return get_index(state_indices, n); }
  int64_t begin(int64_t n) const { return cu_seqlens.present() ? get_index(cu_seqlens, n) : n * spec.t; }
  int64_t end(int64_t n) const { return cu_seqlens.present() ? get_index(cu_seqlens, n + 1) : (n + 1) * spec.t; }
};

constexpr int64_t kStateElems = kDim * kDim;

// The oracle on a copy: fp64 out and an fp64 copy of the pool.
struct DecodeReference {
  HostTensor out, state;
};
DecodeReference run_reference(const DecodeProblem& pb) {
  DecodeReference r;
  r.out = HostTensor(DType::kFloat64, pb.out.shape());
  r.out.poison();
  r.state = pb.state.converted(DType::kFloat64);
  DecodeParams p = pb.params();
  p.out = r.out.ref();
  p.state = r.state.ref();
  flash_kda::reference_decode(p);
  return r;
}

// ---------------------------------------------------------------------------
TEST(Decode, HostEqualsOracleRoundedOnce) {
  for (DType state : {DType::kFloat32, DType::kBFloat16})
    for (int64_t t : {1, 2, 4, 8}) {
      DecodeSpec s;
      s.N = 3;
      s.t = t;
      s.P = 7;
      s.state = state;
      DecodeProblem pb(s);
      const DecodeReference ref = run_reference(pb);
      const auto before = pb.state.snapshot();
      flash_kda::decode(pb.params(), nullptr, 0);
      SCOPED_TRACE(std::string("state=") + short_dtype(state) + " t=" + std::to_string(t));
      // out: the fp64 value rounded once to bf16.
      for (int64_t i = 0; i < pb.out.numel(); ++i) {
        HostTensor one(DType::kBFloat16, {1});
        one.set(0, ref.out.get(i));
        ASSERT_EQ(pb.out.get(i), one.get(0)) << "out element " << i;
      }
      // state: every element equals the oracle's, rounded once to the pool dtype;
      // slots not named keep their bytes.
      for (int64_t e = 0; e < pb.state.numel(); ++e) {
        HostTensor one(state, {1});
        one.set(0, ref.state.get(e));
        ASSERT_EQ(pb.state.get(e), one.get(0)) << "state element " << e;
      }
      std::vector<bool> named(s.P, false);
      for (int64_t n = 0; n < pb.N; ++n) named[pb.slot(n)] = true;
      const size_t slot_bytes = kStateElems * s.H * flash_kda::dtype_size(state);
      for (int64_t slot = 0; slot < s.P; ++slot)
        if (!named[slot])
          EXPECT_EQ(0, std::memcmp(before.data() + slot * slot_bytes, pb.state.data() + slot * slot_bytes, slot_bytes))
              << "slot " << slot << " not named but changed";
        else
          EXPECT_NE(0, std::memcmp(before.data() + slot * slot_bytes, pb.state.data() + slot * slot_bytes, slot_bytes))
              << "slot " << slot << " named but unchanged";
    }
}

TEST(Decode, OutputsAreFiniteAndNonTrivial) {
  DecodeSpec s;
  s.t = 4;
  DecodeProblem pb(s);
  flash_kda::decode(pb.params(), nullptr, 0);
  EXPECT_EQ(pb.out.count_nan(), 0);
  double sum_sq = 0;
  for (int64_t i = 0; i < pb.out.numel(); ++i) sum_sq += pb.out.get(i) * pb.out.get(i);
  EXPECT_GT(sum_sq, 1e-3);
}

TEST(Decode, PaddingRowsGiveZerosAndTouchNoSlot) {
  for (DType idx : {DType::kInt32, DType::kInt64}) {
    DecodeSpec s;
    s.N = 4;
    s.t = 3;
    s.P = 5;
    s.indices = idx;
    s.slots = {2, -1, 0, -7};
    DecodeProblem pb(s);
    const auto before = pb.state.snapshot();
    const DecodeReference ref = run_reference(pb);
    flash_kda::decode(pb.params(), nullptr, 0);
    const int64_t row = s.H * kDim;  // elements of one token in out
    for (int64_t n : {1, 3})
      for (int64_t i = pb.begin(n) * row; i < pb.end(n) * row; ++i) {
        ASSERT_EQ(pb.out.get(i), 0.0) << "padding row " << n;
        ASSERT_EQ(ref.out.get(i), 0.0) << "oracle padding row " << n;
      }
    const size_t slot_bytes = kStateElems * s.H * 4;
    for (int64_t slot : {1, 3, 4})
      EXPECT_EQ(0, std::memcmp(before.data() + slot * slot_bytes, pb.state.data() + slot * slot_bytes, slot_bytes));
    EXPECT_EQ(pb.out.count_nan(), 0);
  }
}

TEST(Decode, PackedLayoutMatchesFixedPerSequence) {
  // Packed sequences of lengths 1..8 vs each sequence decoded alone (fixed layout, N = 1).
  for (DType cu : {DType::kInt32, DType::kInt64}) {
    DecodeSpec s;
    s.seqlens = {1, 8, 3, 2};
    s.P = 6;
    s.cu = cu;
    s.out = DType::kFloat64;
    s.state = DType::kFloat64;
    DecodeProblem pb(s);
    const HostTensor pool_before = pb.state.converted(DType::kFloat64);
    flash_kda::reference_decode(pb.params());
    for (int64_t n = 0; n < pb.N; ++n) {
      DecodeSpec one = s;
      one.seqlens.clear();
      one.N = 1;
      one.t = s.seqlens[n];
      one.slots = {pb.slot(n)};
      DecodeProblem single(one);
      const int64_t row = s.H * kDim, b = pb.begin(n);
      auto copy_rows = [&](const HostTensor& from, HostTensor& to, int64_t per_token) {
        for (int64_t i = 0; i < one.t * per_token; ++i) to.set(i, from.get(b * per_token + i));
      };
      copy_rows(pb.q, single.q, row);
      copy_rows(pb.k, single.k, row);
      copy_rows(pb.v, single.v, row);
      copy_rows(pb.g, single.g, row);
      copy_rows(pb.beta, single.beta, s.H);
      for (int64_t i = 0; i < pb.A_log.numel(); ++i) single.A_log.set(i, pb.A_log.get(i));
      for (int64_t i = 0; i < pb.dt_bias.numel(); ++i) single.dt_bias.set(i, pb.dt_bias.get(i));
      for (int64_t i = 0; i < pool_before.numel(); ++i) single.state.set(i, pool_before.get(i));
      flash_kda::reference_decode(single.params());
      for (int64_t i = 0; i < one.t * row; ++i)
        ASSERT_EQ(single.out.get(i), pb.out.get(b * row + i)) << "sequence " << n;
      const int64_t off = pb.slot(n) * s.H * kStateElems;
      for (int64_t i = 0; i < s.H * kStateElems; ++i)
        ASSERT_EQ(single.state.get(off + i), pb.state.get(off + i)) << "sequence " << n;
    }
  }
}

// ---------------------------------------------------------------------------
// Prefill then decode equals prefill of everything (both float64).
TEST(Decode, PrefillThenDecodeEqualsPrefill) {
  for (int64_t T : {9, 17, 33})
    for (int64_t t : {1, 2, 4, 8}) {
      SCOPED_TRACE("T=" + std::to_string(T) + " t=" + std::to_string(t));
      ProblemSpec ps;
      ps.B = 3;
      ps.T = T;
      ps.H = 2;
      ps.initial = DType::kFloat64;
      ps.final_ = DType::kFloat64;
      Problem full(ps);
      const ReferenceResult want = run_reference(full);  // out [B, T, H, V], state [B, H, V, K]

      // Prefill of the first T - t tokens into fp64 states.
      ProblemSpec pre_spec = ps;
      pre_spec.T = T - t;
      Problem pre(pre_spec);
      const int64_t row = ps.H * kDim;
      auto slice = [&](const HostTensor& from, HostTensor& to, int64_t per_token, int64_t t0, int64_t len) {
        for (int64_t b = 0; b < ps.B; ++b)
          for (int64_t i = 0; i < len * per_token; ++i)
            to.set(b * len * per_token + i, from.get((b * T + t0) * per_token + i));
      };
      slice(full.q, pre.q, row, 0, T - t);
      slice(full.k, pre.k, row, 0, T - t);
      slice(full.v, pre.v, row, 0, T - t);
      slice(full.g, pre.g, row, 0, T - t);
      slice(full.beta, pre.beta, ps.H, 0, T - t);
      for (int64_t i = 0; i < full.A_log.numel(); ++i) pre.A_log.set(i, full.A_log.get(i));
      for (int64_t i = 0; i < full.dt_bias.numel(); ++i) pre.dt_bias.set(i, full.dt_bias.get(i));
      for (int64_t i = 0; i < full.initial_state.numel(); ++i) pre.initial_state.set(i, full.initial_state.get(i));
      const ReferenceResult mid = run_reference(pre);

      // Decode of the last t tokens, sequence b in pool slot slots[b] (pool of B + 2).
      DecodeSpec ds;
      ds.N = ps.B;
      ds.t = t;
      ds.H = ps.H;
      ds.P = ps.B + 2;
      ds.slots = {3, 0, 4};
      ds.state = DType::kFloat64;
      ds.out = DType::kFloat64;
      DecodeProblem dec(ds);
      slice(full.q, dec.q, row, T - t, t);
      slice(full.k, dec.k, row, T - t, t);
      slice(full.v, dec.v, row, T - t, t);
      slice(full.g, dec.g, row, T - t, t);
      slice(full.beta, dec.beta, ps.H, T - t, t);
      for (int64_t i = 0; i < full.A_log.numel(); ++i) dec.A_log.set(i, full.A_log.get(i));
      for (int64_t i = 0; i < full.dt_bias.numel(); ++i) dec.dt_bias.set(i, full.dt_bias.get(i));
      const int64_t per_seq = ps.H * kStateElems;
      for (int64_t b = 0; b < ps.B; ++b)
        for (int64_t i = 0; i < per_seq; ++i) dec.state.set(ds.slots[b] * per_seq + i, mid.final_state.get(b * per_seq + i));
      flash_kda::reference_decode(dec.params());

      double max_out = 0, max_state = 0;
      for (int64_t b = 0; b < ps.B; ++b) {
        for (int64_t i = 0; i < t * row; ++i) {
          const double w = want.out.get((b * T + T - t) * row + i), got = dec.out.get(b * t * row + i);
          max_out = std::max(max_out, std::fabs(w - got) / (1.0 + std::fabs(w)));
        }
        for (int64_t i = 0; i < per_seq; ++i) {
          const double w = want.final_state.get(b * per_seq + i), got = dec.state.get(ds.slots[b] * per_seq + i);
          max_state = std::max(max_state, std::fabs(w - got) / (1.0 + std::fabs(w)));
        }
      }
      EXPECT_LT(max_out, 1e-12);
      EXPECT_LT(max_state, 1e-12);
    }
}

// ---------------------------------------------------------------------------
// Refusals: the error, and nothing written.
TensorRef& field(DecodeParams& p, const std::string& n) {
  if (n == "q") return p.q;
  if (n == "k") return p.k;
  if (n == "v") return p.v;
  if (n == "g") return p.g;
  if (n == "beta") return p.beta;
  if (n == "out") return p.out;
  if (n == "A_log") return p.A_log;
  if (n == "dt_bias") return p.dt_bias;
  if (n == "state") return p.state;
  if (n == "state_indices") return p.state_indices;
  if (n == "cu_seqlens") return p.cu_seqlens;
  throw std::logic_error("no tensor argument " + n);
}

using DecodeMutation = std::function<void(DecodeProblem&, DecodeParams&, Scratch&)>;
struct DecodeErrorCase {
  std::string name;
  bool varlen;
  DecodeMutation mutate;
  ErrorKind kind;
  std::string argument;
  std::vector<std::string> fragments;
};
std::ostream& operator<<(std::ostream& os, const DecodeErrorCase& c) { return os << c.name; }

std::vector<DecodeErrorCase> decode_error_cases() {
  std::vector<DecodeErrorCase> cases;
  auto add = [&](std::string name, bool varlen, DecodeMutation m, ErrorKind kind, std::string arg,
                 std::vector<std::string> fragments) {
    cases.push_back({std::move(name), varlen, std::move(m), kind, std::move(arg), std::move(fragments)});
  };
  // Base problems: fixed N = 3, t = 2, H = 2, P = 6; packed seqlens {2, 3}.
  for (std::string n : {"q", "k", "v", "g", "beta", "out", "A_log", "dt_bias", "state", "state_indices"})
    add("missing_" + n, false, [n](DecodeProblem&, DecodeParams& p, Scratch&) { field(p, n) = TensorRef{}; },
        ErrorKind::kValue, n, {"required tensor is missing"});
  struct DtypeCase {
    std::string tensor;
    DType given;
    std::string expected;
    bool varlen;
  };
  for (const DtypeCase& d : std::vector<DtypeCase>{
           {"q", DType::kFloat32, "bfloat16", false},      {"k", DType::kFloat16, "bfloat16", false},
           {"v", DType::kFloat32, "bfloat16", false},      {"g", DType::kFloat64, "bfloat16", false},
           {"beta", DType::kFloat32, "bfloat16", false},   {"out", DType::kFloat32, "bfloat16", false},
           {"A_log", DType::kBFloat16, "float32", false},  {"dt_bias", DType::kFloat64, "float32", false},
           {"state", DType::kFloat64, "bfloat16 or float32", false},
           {"state", DType::kFloat16, "bfloat16 or float32", false},
           {"state_indices", DType::kFloat32, "int32 or int64", false},
           {"cu_seqlens", DType::kFloat32, "int32 or int64", true}})
    add("dtype_" + d.tensor + "_" + short_dtype(d.given), d.varlen,
        [d](DecodeProblem&, DecodeParams& p, Scratch& s) {
          TensorRef& t = field(p, d.tensor);
          t = s.make(d.given, std::vector<int64_t>(t.shape, t.shape + t.ndim)).ref();
        },
        ErrorKind::kType, d.tensor,
        {"expected dtype " + d.expected, std::string("got ") + flash_kda::dtype_name(d.given)});
  struct ShapeCase {
    std::string name, tensor;
    bool varlen;
    std::vector<int64_t> shape;
    std::vector<std::string> fragments;
  };
  for (const ShapeCase& c : std::vector<ShapeCase>{
           {"rank_q", "q", false, {3, 2, 256}, {"expected a 4-D tensor, got 3-D"}},
           {"rank_state", "state", false, {6, 2, 16384}, {"expected a 4-D tensor, got 3-D"}},
           {"rank_state_indices", "state_indices", false, {3, 1}, {"expected a 1-D tensor, got 2-D"}},
           {"K_64", "q", false, {3, 2, 2, 64}, {"K = 64 is not supported"}},
           {"V_64", "v", false, {3, 2, 2, 64}, {"V = 64 is not supported"}},
           {"k", "k", false, {3, 1, 2, 128}, {"expected shape [3, 2, 2, 128] (same as q), got [3, 1, 2, 128]"}},
           {"v", "v", false, {3, 2, 1, 128}, {"expected shape [3, 2, 2, 128]"}},
           {"beta", "beta", false, {3, 2, 1}, {"expected shape [3, 2, 2]"}},
           {"out", "out", false, {2, 2, 2, 128}, {"expected shape [3, 2, 2, 128] (same as v)"}},
           {"A_log", "A_log", false, {1}, {"expected shape [2] ([H])"}},
           {"dt_bias", "dt_bias", false, {2, 64}, {"expected shape [2, 128] ([H, K])"}},
           {"state_H", "state", false, {6, 1, 128, 128}, {"expected shape [6, 2, 128, 128] ([P, H, V, K]", "got [6, 1, 128, 128]"}},
           {"state_V", "state", false, {6, 2, 64, 256}, {"expected shape [6, 2, 128, 128]"}},
           {"state_indices_N", "state_indices", false, {2}, {"expected shape [3] ([N]", "got [2]"}},
           {"varlen_state_indices_N", "state_indices", true, {3}, {"expected shape [2] ([N]", "got [3]"}},
           {"cu_seqlens_one_entry", "cu_seqlens", true, {1}, {"expected at least 2 entries"}},
       })
    add("shape_" + c.name, c.varlen,
        [c](DecodeProblem&, DecodeParams& p, Scratch&) { reshape(field(p, c.tensor), c.shape); },
        ErrorKind::kValue, c.tensor, c.fragments);
  // Token counts: t = 0 and t = 9 (fixed), too many / few packed tokens, B != 1 with cu_seqlens.
  auto all_tokens = [](DecodeParams& p, std::vector<int64_t> lead) {
    for (TensorRef* t : {&p.q, &p.k, &p.v, &p.g, &p.out}) reshape(*t, {lead[0], lead[1], 2, 128});
    reshape(p.beta, {lead[0], lead[1], 2});
  };
  add("tokens_9", false,
      [&](DecodeProblem& pb, DecodeParams& p, Scratch& s) {
        for (const char* n : {"q", "k", "v", "g", "out"}) field(p, n) = s.make(DType::kBFloat16, {3, 9, 2, 128}).ref();
        p.beta = s.make(DType::kBFloat16, {3, 9, 2}).ref();
        (void)pb;
      },
      ErrorKind::kValue, "q", {"expected 1..8 new tokens per sequence", "got t = 9", "use fwd for prefill"});
  add("tokens_0", false, [all_tokens](DecodeProblem&, DecodeParams& p, Scratch&) { all_tokens(p, {3, 0}); },
      ErrorKind::kValue, "q", {"got t = 0"});
  add("packed_too_many", true,
      [](DecodeProblem&, DecodeParams& p, Scratch& s) {
        for (const char* n : {"q", "k", "v", "g", "out"}) field(p, n) = s.make(DType::kBFloat16, {1, 17, 2, 128}).ref();
        p.beta = s.make(DType::kBFloat16, {1, 17, 2}).ref();
      },
      ErrorKind::kValue, "q", {"expected between N = 2 and 8 * N = 16 packed tokens", "got 17"});
  add("packed_batch_2", true, [all_tokens](DecodeProblem&, DecodeParams& p, Scratch&) { all_tokens(p, {5, 1}); },
      ErrorKind::kValue, "q", {"with cu_seqlens the first dimension must be 1"});
  // Contents of host index tensors.
  add("cu_seqlens_start", true,
      [](DecodeProblem& pb, DecodeParams& p, Scratch& s) {
        HostTensor& c = s.make(DType::kInt64, {3});
        put_index(c, 0, 1), put_index(c, 1, 2), put_index(c, 2, 5);
        p.cu_seqlens = c.ref();
        (void)pb;
      },
      ErrorKind::kValue, "cu_seqlens", {"expected cu_seqlens[0] == 0, got 1"});
  add("cu_seqlens_empty_sequence", true,
      [](DecodeProblem&, DecodeParams& p, Scratch& s) {
        HostTensor& c = s.make(DType::kInt32, {3});
        put_index(c, 0, 0), put_index(c, 1, 0), put_index(c, 2, 5);
        p.cu_seqlens = c.ref();
      },
      ErrorKind::kValue, "cu_seqlens", {"expected 1..8 tokens per sequence", "cu_seqlens[1] - cu_seqlens[0] = 0"});
  add("cu_seqlens_end", true,
      [](DecodeProblem&, DecodeParams& p, Scratch& s) {
        HostTensor& c = s.make(DType::kInt64, {3});
        put_index(c, 0, 0), put_index(c, 1, 2), put_index(c, 2, 4);
        p.cu_seqlens = c.ref();
      },
      ErrorKind::kValue, "cu_seqlens", {"last entry to equal the number of packed tokens 5", "got 4"});
  add("index_out_of_range", false,
      [](DecodeProblem& pb, DecodeParams&, Scratch&) { put_index(pb.state_indices, 1, 6); },
      ErrorKind::kValue, "state_indices", {"expected slots in [0, 6)", "state_indices[1] = 6"});
  add("index_duplicate", false,
      [](DecodeProblem& pb, DecodeParams&, Scratch&) {
        put_index(pb.state_indices, 0, 4), put_index(pb.state_indices, 1, -1), put_index(pb.state_indices, 2, 4);
      },
      ErrorKind::kValue, "state_indices", {"expected distinct slots, got slot 4 at entries 0 and 2"});
  add("index_duplicate_varlen_int32", true,
      [](DecodeProblem& pb, DecodeParams& p, Scratch& s) {
        HostTensor& c = s.make(DType::kInt32, {2});
        put_index(c, 0, 5), put_index(c, 1, 5);
        p.state_indices = c.ref();
        (void)pb;
      },
      ErrorKind::kValue, "state_indices", {"got slot 5 at entries 0 and 1"});
  // Layout, device, scalars, overlap.
  add("non_contiguous_state", false,
      [](DecodeProblem&, DecodeParams& p, Scratch&) { std::swap(p.state.strides[2], p.state.strides[3]); },
      ErrorKind::kValue, "state", {"expected a contiguous"});
  add("misaligned_state", false,
      [](DecodeProblem& pb, DecodeParams& p, Scratch& s) {
        HostTensor& big = s.make(DType::kFloat32, {pb.state.numel() + 4});
        p.state.data = big.data() + 4;
      },
      ErrorKind::kValue, "state", {"16-byte aligned"});
  add("misaligned_q", false,
      [](DecodeProblem& pb, DecodeParams& p, Scratch& s) {
        HostTensor& big = s.make(DType::kBFloat16, {pb.q.numel() + 8});
        p.q.data = big.data() + 2;
      },
      ErrorKind::kValue, "q", {"16-byte aligned"});
  add("device_state", false,
      [](DecodeProblem&, DecodeParams& p, Scratch&) { p.state.device = flash_kda::DeviceType::kCUDA; },
      ErrorKind::kValue, "state", {"expected a tensor on the same device as q (cpu:0), got cuda:0"});
  add("device_state_indices", false,
      [](DecodeProblem&, DecodeParams& p, Scratch&) { p.state_indices.device = flash_kda::DeviceType::kCUDA; },
      ErrorKind::kValue, "state_indices", {"same device as q"});
  add("lower_bound", false, [](DecodeProblem&, DecodeParams& p, Scratch&) { p.lower_bound = -6; },
      ErrorKind::kValue, "lower_bound", {"expected a value in [-5, 0], got -6"});
  add("lower_bound_positive", false, [](DecodeProblem&, DecodeParams& p, Scratch&) { p.lower_bound = 0.5; },
      ErrorKind::kValue, "lower_bound", {"got 0.5"});
  add("scale_nan", false, [](DecodeProblem&, DecodeParams& p, Scratch&) { p.scale = std::nan(""); },
      ErrorKind::kValue, "scale", {"expected a finite number"});
  add("out_overlaps_q", false, [](DecodeProblem&, DecodeParams& p, Scratch&) { p.out.data = p.q.data; },
      ErrorKind::kValue, "out", {"must not overlap input q"});
  add("state_overlaps_v", false,
      [](DecodeProblem& pb, DecodeParams& p, Scratch&) {
        p.v = pb.state.ref();
        reshape(p.v, {3, 2, 2, 128});
        p.v.dtype = DType::kBFloat16;
      },
      ErrorKind::kValue, "state", {"must not overlap input v"});
  return cases;
}

class DecodeValidationError : public ::testing::TestWithParam<DecodeErrorCase> {};

TEST_P(DecodeValidationError, RefusedAndNothingWritten) {
  const DecodeErrorCase& c = GetParam();
  DecodeSpec s;
  if (c.varlen) s.seqlens = {2, 3};
  DecodeProblem pb(s);
  pb.state.poison();
  DecodeParams p = pb.params();
  Scratch scratch;
  c.mutate(pb, p, scratch);
  const auto out_before = pb.out.snapshot(), state_before = pb.state.snapshot();
  // The oracle accepts wide dtypes and any alignment: for those cases only decode is called.
  const bool oracle_accepts = c.name.rfind("dtype_state_fp64", 0) == 0 || c.name == "dtype_out_fp32" ||
                              c.name.rfind("misaligned", 0) == 0;
  for (int round = 0; round < 2; ++round) {
    if (round == 1 && oracle_accepts) continue;
    try {
      if (round == 0)
        flash_kda::decode(p, nullptr, 0);
      else
        flash_kda::reference_decode(p);
      ADD_FAILURE() << c.name << ": accepted (round " << round << ")";
    } catch (const flash_kda::Error& e) {
      expect_error_message(e, c.kind, c.argument, c.fragments);
    }
  }
  EXPECT_EQ(pb.out.snapshot(), out_before) << "out written by a refused call";
  EXPECT_EQ(pb.state.snapshot(), state_before) << "state written by a refused call";
  for (const HostTensor& b : scratch.buffers) EXPECT_EQ(b.count_nan(), b.numel()) << "scratch written";
}

INSTANTIATE_TEST_SUITE_P(Decode, DecodeValidationError, ::testing::ValuesIn(decode_error_cases()),
                         [](const ::testing::TestParamInfo<DecodeErrorCase>& i) { return i.param.name; });

TEST(DecodeValidation, WorkspaceOnHostIsZeroAndShapeIsReported) {
  DecodeSpec s;
  s.seqlens = {1, 8, 2};
  s.P = 9;
  DecodeProblem pb(s);
  EXPECT_EQ(flash_kda::decode_workspace_size(pb.params()), 0u);
  const flash_kda::DecodeShape shape = flash_kda::validate_decode(pb.params());
  EXPECT_EQ(shape.num_sequences, 3);
  EXPECT_EQ(shape.total_tokens, 11);
  EXPECT_EQ(shape.heads, 2);
  EXPECT_EQ(shape.pool_size, 9);
  EXPECT_TRUE(shape.varlen);
}

TEST(DecodeValidation, EmptyPoolWithOnlyPaddingIsAccepted) {
  DecodeSpec s;
  s.N = 2;
  s.t = 1;
  s.P = 0;
  s.slots = {-1, -1};
  DecodeProblem pb(s);
  flash_kda::decode(pb.params(), nullptr, 0);
  for (int64_t i = 0; i < pb.out.numel(); ++i) ASSERT_EQ(pb.out.get(i), 0.0);
}

TEST(DecodeValidation, CudaTensorsInCpuOnlyBuildAreUnsupported) {
  if (flash_kda::cuda_backend_available(0)) GTEST_SKIP() << "this build has CUDA kernels";
  DecodeSpec s;
  DecodeProblem pb(s);
  DecodeParams p = pb.params();
  for (const char* n : {"q", "k", "v", "g", "beta", "out", "A_log", "dt_bias", "state", "state_indices"})
    field(p, n).device = flash_kda::DeviceType::kCUDA;
  try {
    std::vector<unsigned char> ws(256);
    flash_kda::decode(p, ws.data(), ws.size());
    ADD_FAILURE() << "accepted";
  } catch (const flash_kda::Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported) << e.what();
    EXPECT_EQ(e.argument(), "q");
  }
}

}  // namespace
}  // namespace kda_test
