// Serving features on host tensors: state pools indexed by slot
// (state_indices, final_state_indices, zero_start, padding), checkpoint
// states, int32 cu_seqlens and strided beta; both the float64 oracle
// (reference_fwd) and the fp32 chunked backend (fwd).
//
// The pool semantics are checked exactly: a pooled call must give the very
// bits of a dense call on the gathered states (same arithmetic), padding rows
// are zeros and slots not named keep their bits. Checkpoints must equal the
// final state of a call over the prefix (bit for bit: the interval is a
// multiple of the chunk, so the chunking is the same). The prefix-cache
// round trip restarts from a checkpoint and must match one call over all
// tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "test_util.h"

namespace kda_test {
namespace {

using flash_kda::ErrorKind;

constexpr int64_t kState = kDim * kDim;  // elements of one head's state

HostTensor index_tensor(DType dtype, const std::vector<int64_t>& values) {
  HostTensor t(dtype, {static_cast<int64_t>(values.size())});
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::kInt32) reinterpret_cast<int32_t*>(t.data())[i] = static_cast<int32_t>(values[i]);
    else reinterpret_cast<int64_t*>(t.data())[i] = values[i];
  }
  return t;
}

HostTensor flag_tensor(const std::vector<int>& flags) {
  HostTensor t(DType::kBool, {static_cast<int64_t>(flags.size())});
  for (size_t i = 0; i < flags.size(); ++i) t.data()[i] = flags[i] ? 1 : 0;
  return t;
}

HostTensor random_pool(DType dtype, int64_t P, int64_t H, uint64_t seed) {
  HostTensor t(dtype, {P, H, kDim, kDim});
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, normal(rng));
  return t;
}

// Copies state rows [src_row] -> [dst_row] (H heads each), converting dtypes.
void copy_state_row(const HostTensor& src, int64_t src_row, HostTensor& dst, int64_t dst_row, int64_t H) {
  for (int64_t i = 0; i < H * kState; ++i) dst.set(dst_row * H * kState + i, src.get(src_row * H * kState + i));
}

bool rows_bit_equal(const HostTensor& a, int64_t ra, const HostTensor& b, int64_t rb, int64_t H) {
  const size_t bytes = static_cast<size_t>(H * kState) * flash_kda::dtype_size(a.dtype());
  return a.dtype() == b.dtype() && std::memcmp(a.data() + ra * bytes, b.data() + rb * bytes, bytes) == 0;
}

// Tokens [begin, end) of sequence n (flattened rows).
std::pair<int64_t, int64_t> token_range(const Problem& pb, int64_t n) {
  if (pb.spec.seqlens.empty()) return {n * pb.T, (n + 1) * pb.T};
  int64_t begin = 0;
  for (int64_t i = 0; i < n; ++i) begin += pb.spec.seqlens[i];
  return {begin, begin + pb.spec.seqlens[n]};
}

// One forward over `p` with the oracle or the chunked backend.
enum class Backend { kReference, kChunked };
void run(Backend b, const FwdParams& p) {
  if (b == Backend::kReference) flash_kda::reference_fwd(p);
  else flash_kda::fwd(p, nullptr, 0);
}

// ---- pools: the pooled call equals the dense call on gathered states ---------------

struct PoolCase {
  std::string name;
  Backend backend;
  DType pool_dtype;
  bool varlen;
  bool separate_final;  // final_state_indices into a second pool
  bool same_tensor;     // initial_state and final_state the very same pool
  DType index_dtype;
};

void PrintTo(const PoolCase& c, std::ostream* os) { *os << c.name; }

class StatePool : public ::testing::TestWithParam<PoolCase> {};

TEST_P(StatePool, MatchesDenseCallOnGatheredStates) {
  const PoolCase& c = GetParam();
  ProblemSpec spec;
  spec.H = 2;
  if (c.varlen) spec.seqlens = {37, 16, 0, 50, 9, 21};
  else { spec.B = 5; spec.T = 23; }
  Problem pb(spec);
  const int64_t N = pb.N, H = pb.H, P = 2 * N + 1;
  SCOPED_TRACE(pb.describe() + " case " + c.name);

  // A random permutation of slots; sequence 1 is padding, 3 starts from zeros.
  std::mt19937_64 rng(pb.seed ^ 0x5107);
  std::vector<int64_t> perm(P);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int64_t> slots(perm.begin(), perm.begin() + N), final_slots(N);
  slots[1] = -1;
  for (int64_t n = 0; n < N; ++n) final_slots[n] = c.separate_final ? perm[N + n] : slots[n];
  if (c.separate_final) final_slots[2] = -7;  // this one's final state is not written
  std::vector<int> zero(N, 0);
  zero[3] = 1;

  HostTensor pool_in = random_pool(c.pool_dtype, P, H, pb.seed + 1);
  HostTensor pool_out_separate;
  if (!c.same_tensor) {
    pool_out_separate = random_pool(c.pool_dtype, P, H, pb.seed + 2);
  }
  HostTensor& pool_out = c.same_tensor ? pool_in : pool_out_separate;
  const HostTensor pool_in_before = pool_in.converted(c.pool_dtype);
  const HostTensor pool_out_before = pool_out.converted(c.pool_dtype);
  HostTensor idx = index_tensor(c.index_dtype, slots);
  HostTensor fidx = index_tensor(c.index_dtype, final_slots);
  HostTensor zs = flag_tensor(zero);

  // Dense call: gathered initial states (zeros for padding / zero start).
  HostTensor dense_in(c.pool_dtype, {N, H, kDim, kDim}), dense_final(c.pool_dtype, {N, H, kDim, kDim});
  for (int64_t n = 0; n < N; ++n)
    if (slots[n] >= 0 && !zero[n]) copy_state_row(pool_in_before, slots[n], dense_in, n, H);
  dense_final.poison();
  const DType out_dtype = c.backend == Backend::kReference ? DType::kFloat64 : DType::kBFloat16;
  HostTensor dense_out(out_dtype, pb.out.shape()), pooled_out(out_dtype, pb.out.shape());
  dense_out.poison();
  pooled_out.poison();
  FwdParams pd = pb.params();
  pd.out = dense_out.ref();
  pd.initial_state = dense_in.ref();
  pd.final_state = dense_final.ref();
  ASSERT_NO_THROW(run(c.backend, pd));

  FwdParams pp = pb.params();
  pp.out = pooled_out.ref();
  pp.initial_state = pool_in.ref();
  pp.final_state = pool_out.ref();
  pp.state_indices = idx.ref();
  if (c.separate_final) pp.final_state_indices = fidx.ref();
  pp.zero_start = zs.ref();
  ASSERT_NO_THROW(run(c.backend, pp));

  // Outputs: the dense call's bits, zeros on padding rows.
  for (int64_t n = 0; n < N; ++n) {
    const auto [begin, end] = token_range(pb, n);
    for (int64_t i = begin * H * kDim; i < end * H * kDim; ++i) {
      const double want = slots[n] < 0 ? 0.0 : dense_out.get(i);
      ASSERT_EQ(pooled_out.get(i), want) << "sequence " << n << " element " << i;
    }
  }
  // Written slots hold the dense final states; every other slot keeps its bits.
  std::vector<int64_t> written_row(P, -1);
  for (int64_t n = 0; n < N; ++n)
    if (slots[n] >= 0 && final_slots[n] >= 0) written_row[final_slots[n]] = n;
  for (int64_t s = 0; s < P; ++s) {
    if (written_row[s] >= 0)
      EXPECT_TRUE(rows_bit_equal(pool_out, s, dense_final, written_row[s], H)) << "slot " << s;
    else
      EXPECT_TRUE(rows_bit_equal(pool_out, s, pool_out_before, s, H)) << "untouched slot " << s << " changed";
  }
  if (!c.same_tensor) EXPECT_TRUE(bit_equal(pool_in, pool_in_before)) << "the input pool was written";
}

std::vector<PoolCase> pool_cases() {
  std::vector<PoolCase> r;
  for (Backend b : {Backend::kReference, Backend::kChunked})
    for (DType d : {DType::kBFloat16, DType::kFloat32})
      for (bool varlen : {true, false})
        for (int mode = 0; mode < 3; ++mode) {  // 0: same tensor, 1: two pools, 2: two pools + final indices
          PoolCase c;
          c.backend = b;
          c.pool_dtype = d;
          c.varlen = varlen;
          c.same_tensor = mode == 0;
          c.separate_final = mode == 2;
          c.index_dtype = (mode == 1) ? DType::kInt32 : DType::kInt64;
          c.name = std::string(b == Backend::kReference ? "reference" : "chunked") + "_" + short_dtype(d) +
                   (varlen ? "_varlen" : "_fixed") +
                   (mode == 0 ? "_inplace" : mode == 1 ? "_twopools_int32" : "_final_indices");
          r.push_back(c);
        }
  return r;
}

INSTANTIATE_TEST_SUITE_P(Fwd, StatePool, ::testing::ValuesIn(pool_cases()),
                         [](const ::testing::TestParamInfo<PoolCase>& info) { return info.param.name; });

// In place with final_state_indices: write slots other sequences do not read.
TEST(StatePool, InPlaceWithSeparateFinalSlots) {
  ProblemSpec spec;
  spec.H = 1;
  spec.seqlens = {20, 33};
  Problem pb(spec);
  HostTensor pool = random_pool(DType::kFloat32, 5, 1, pb.seed);
  const HostTensor before = pool.converted(DType::kFloat32);
  HostTensor idx = index_tensor(DType::kInt64, {0, 1});
  HostTensor fidx = index_tensor(DType::kInt64, {3, 1});  // seq 0: 0 -> 3; seq 1 in place
  FwdParams p = pb.params();
  p.initial_state = pool.ref();
  p.final_state = pool.ref();
  p.state_indices = idx.ref();
  p.final_state_indices = fidx.ref();
  ASSERT_NO_THROW(flash_kda::fwd(p, nullptr, 0));
  EXPECT_TRUE(rows_bit_equal(pool, 0, before, 0, 1)) << "slot 0 is only read";
  EXPECT_FALSE(rows_bit_equal(pool, 3, before, 3, 1)) << "slot 3 is written";
  EXPECT_TRUE(rows_bit_equal(pool, 2, before, 2, 1));
  EXPECT_TRUE(rows_bit_equal(pool, 4, before, 4, 1));
}

// ---- checkpoints -------------------------------------------------------------------

// A problem holding tokens [begin, begin + len) of `src` as one sequence.
Problem prefix_problem(const Problem& src, int64_t begin, int64_t len) {
  ProblemSpec spec = src.spec;
  spec.seqlens = {len};
  spec.initial = spec.final_ = DType::kOther;
  Problem pb(spec, src.seed);
  const int64_t H = src.H;
  auto copy = [&](const HostTensor& from, HostTensor& to, int64_t per_token) {
    std::memcpy(to.data(), from.data() + begin * per_token * flash_kda::dtype_size(from.dtype()),
                static_cast<size_t>(len * per_token) * flash_kda::dtype_size(from.dtype()));
  };
  copy(src.q, pb.q, H * kDim);
  copy(src.k, pb.k, H * kDim);
  copy(src.v, pb.v, H * kDim);
  copy(src.g, pb.g, H * kDim);
  copy(src.beta, pb.beta, H);
  std::memcpy(pb.A_log.data(), src.A_log.data(), src.A_log.bytes());
  std::memcpy(pb.dt_bias.data(), src.dt_bias.data(), src.dt_bias.bytes());
  return pb;
}

class Checkpoints : public ::testing::TestWithParam<std::tuple<Backend, DType, int64_t>> {};

TEST_P(Checkpoints, EqualTheFinalStateOfThePrefix) {
  const auto [backend, dtype, interval] = GetParam();
  ProblemSpec spec;
  spec.H = 2;
  spec.seqlens = {130, 64, 0, 200, 15, 96};
  Problem pb(spec);
  const int64_t N = pb.N, H = pb.H;
  SCOPED_TRACE(pb.describe() + " interval " + std::to_string(interval));
  std::vector<int64_t> offsets(N + 1, 0);
  for (int64_t n = 0; n < N; ++n) offsets[n + 1] = offsets[n] + spec.seqlens[n] / interval;
  const int64_t rows = offsets[N] + 2;  // two spare rows: must stay untouched
  HostTensor checkpoints(dtype, {rows, H, kDim, kDim});
  checkpoints.poison();
  HostTensor offs = index_tensor(DType::kInt32, offsets);
  const DType out_dtype = backend == Backend::kReference ? DType::kFloat64 : DType::kBFloat16;
  HostTensor out(out_dtype, pb.out.shape()), final_state(dtype, {N, H, kDim, kDim});
  FwdParams p = pb.params();
  p.out = out.ref();
  p.final_state = final_state.ref();
  p.checkpoints = checkpoints.ref();
  p.checkpoint_offsets = offs.ref();
  p.checkpoint_interval = interval;
  ASSERT_NO_THROW(run(backend, p));

  for (int64_t n = 0; n < N; ++n) {
    const auto [begin, end] = token_range(pb, n);
    for (int64_t i = 1; i <= (end - begin) / interval; ++i) {
      Problem prefix = prefix_problem(pb, begin, i * interval);
      HostTensor pout(out_dtype, prefix.out.shape()), pfinal(dtype, {1, H, kDim, kDim});
      FwdParams pp = prefix.params();
      pp.out = pout.ref();
      pp.final_state = pfinal.ref();
      ASSERT_NO_THROW(run(backend, pp));
      EXPECT_TRUE(rows_bit_equal(checkpoints, offsets[n] + i - 1, pfinal, 0, H))
          << "sequence " << n << " checkpoint " << i;
    }
  }
  for (int64_t r = offsets[N]; r < rows; ++r)
    for (int64_t i = 0; i < H * kState; ++i) ASSERT_TRUE(std::isnan(checkpoints.get(r * H * kState + i)));
}

INSTANTIATE_TEST_SUITE_P(Fwd, Checkpoints,
                         ::testing::Combine(::testing::Values(Backend::kReference, Backend::kChunked),
                                            ::testing::Values(DType::kBFloat16, DType::kFloat32),
                                            ::testing::Values(int64_t(16), int64_t(64))),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) == Backend::kReference ? "reference"
                                                                                             : "chunked") +
                                  "_" + short_dtype(std::get<1>(info.param)) + "_every" +
                                  std::to_string(std::get<2>(info.param));
                         });

// Prefix cache: prefill T tokens with checkpoints every 64, then restart from
// checkpoint j with the remaining tokens: outputs and final state match one
// call over all T tokens.
TEST(Checkpoints, PrefixCacheRoundTrip) {
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    ProblemSpec spec;
    spec.H = 2;
    spec.seqlens = {300};
    Problem pb(spec);
    const int64_t H = pb.H, T = 300, interval = 64;
    SCOPED_TRACE(pb.describe() + " checkpoints " + short_dtype(dtype));
    HostTensor full_final(dtype, {1, H, kDim, kDim}), checkpoints(dtype, {T / interval, H, kDim, kDim});
    HostTensor offs = index_tensor(DType::kInt64, {0, T / interval});
    FwdParams p = pb.params();
    p.final_state = full_final.ref();
    p.checkpoints = checkpoints.ref();
    p.checkpoint_offsets = offs.ref();
    p.checkpoint_interval = interval;
    ASSERT_NO_THROW(flash_kda::fwd(p, nullptr, 0));

    for (int64_t j = 1; j <= T / interval; ++j) {
      const int64_t start = j * interval;
      Problem rest = prefix_problem(pb, start, T - start);
      HostTensor pool(dtype, {T / interval, H, kDim, kDim});  // the checkpoints as a pool
      std::memcpy(pool.data(), checkpoints.data(), checkpoints.bytes());
      HostTensor idx = index_tensor(DType::kInt32, {j - 1});
      HostTensor rest_final(dtype, {1, H, kDim, kDim});
      FwdParams pr = rest.params();
      pr.initial_state = pool.ref();
      pr.state_indices = idx.ref();
      ASSERT_NO_THROW(flash_kda::fwd(pr, nullptr, 0));
      // Second call's final state via a dense final (pool is read only here).
      FwdParams pf = pr;
      pf.out = rest.out.ref();
      HostTensor dense_init(dtype, {1, H, kDim, kDim});
      std::memcpy(dense_init.data(), checkpoints.data() + (j - 1) * H * kState * flash_kda::dtype_size(dtype),
                  dense_init.bytes());
      pf.initial_state = dense_init.ref();
      pf.final_state = rest_final.ref();
      pf.state_indices = TensorRef{};
      ASSERT_NO_THROW(flash_kda::fwd(pf, nullptr, 0));

      HostTensor full_tail(DType::kBFloat16, rest.out.shape());
      std::memcpy(full_tail.data(), pb.out.data() + start * H * kDim * 2, full_tail.bytes());
      EXPECT_LT(rel_l2(rest.out, full_tail), 5e-3) << "outputs after restart at token " << start;
      EXPECT_LT(rel_l2(rest_final, full_final), 5e-3) << "final state after restart at token " << start;
      if (dtype == DType::kFloat32) {
        EXPECT_TRUE(bit_equal(rest.out, full_tail)) << "fp32 checkpoints restart bit-exactly";
        EXPECT_TRUE(bit_equal(rest_final, full_final));
      }
    }
  }
}

// ---- int32 cu_seqlens and strided beta give the same bits -----------------------------

TEST(ServingInputs, Int32CuSeqlensAndStridedBeta) {
  ProblemSpec spec;
  spec.H = 3;
  spec.seqlens = {17, 40, 5};
  spec.final_ = DType::kFloat32;
  Problem pb(spec);
  ASSERT_NO_THROW(flash_kda::fwd(pb.params(), nullptr, 0));
  const HostTensor out0 = pb.out.converted(DType::kBFloat16);
  const HostTensor final0 = pb.final_state.converted(DType::kFloat32);

  std::vector<int64_t> cu(pb.N + 1);
  for (int64_t i = 0; i <= pb.N; ++i) cu[i] = reinterpret_cast<const int64_t*>(pb.cu_seqlens.data())[i];
  HostTensor cu32 = index_tensor(DType::kInt32, cu);
  // beta stored transposed, [B, H, T] memory viewed as [B, T, H]; and
  // beta inside a wider [B, T, H + 5] buffer.
  const int64_t T = pb.T, H = pb.H;
  HostTensor beta_t(DType::kBFloat16, {1, H, T}), beta_w(DType::kBFloat16, {1, T, H + 5});
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      beta_t.set(h * T + t, pb.beta.get(t * H + h));
      beta_w.set(t * (H + 5) + h, pb.beta.get(t * H + h));
    }
  for (int variant = 0; variant < 2; ++variant) {
    TensorRef beta = variant == 0 ? beta_t.ref() : beta_w.ref();
    beta.shape[0] = 1;
    beta.shape[1] = T;
    beta.shape[2] = H;
    if (variant == 0) {
      beta.strides[0] = H * T; beta.strides[1] = 1; beta.strides[2] = T;
    } else {
      beta.strides[0] = T * (H + 5); beta.strides[1] = H + 5; beta.strides[2] = 1;
    }
    pb.poison_outputs();
    FwdParams p = pb.params();
    p.cu_seqlens = cu32.ref();
    p.beta = beta;
    ASSERT_NO_THROW(flash_kda::fwd(p, nullptr, 0));
    EXPECT_TRUE(bit_equal(pb.out, out0)) << "variant " << variant;
    EXPECT_TRUE(bit_equal(pb.final_state, final0)) << "variant " << variant;
    // The oracle reads the same strides.
    HostTensor ref_strided(DType::kFloat64, pb.out.shape()), ref_dense(DType::kFloat64, pb.out.shape());
    FwdParams r = p;
    r.out = ref_strided.ref();
    r.final_state = TensorRef{};
    flash_kda::reference_fwd(r);
    r = pb.params();
    r.out = ref_dense.ref();
    r.final_state = TensorRef{};
    flash_kda::reference_fwd(r);
    EXPECT_TRUE(bit_equal(ref_strided, ref_dense)) << "variant " << variant;
  }
}

// ---- validation of every new argument -----------------------------------------------

struct ServingSetup {
  Problem pb;
  HostTensor pool, pool2, idx, fidx, zs, ckpt, offs, cu32;
  FwdParams p;
  std::vector<std::vector<unsigned char>> before;

  ServingSetup() : pb(spec()) {
    pool = random_pool(DType::kFloat32, 4, 2, 1);
    pool2 = random_pool(DType::kFloat32, 4, 2, 2);
    idx = index_tensor(DType::kInt64, {2, 0});
    fidx = index_tensor(DType::kInt32, {1, 3});
    zs = flag_tensor({0, 1});
    ckpt = HostTensor(DType::kFloat32, {3, 2, kDim, kDim});
    ckpt.poison();
    offs = index_tensor(DType::kInt64, {0, 1, 3});  // lengths 20, 40 at interval 16: 1 and 2
    p = pb.params();
    p.initial_state = pool.ref();
    p.final_state = pool.ref();
    p.state_indices = idx.ref();
    p.zero_start = zs.ref();
    p.checkpoints = ckpt.ref();
    p.checkpoint_offsets = offs.ref();
    p.checkpoint_interval = 16;
  }
  static ProblemSpec spec() {
    ProblemSpec s;
    s.H = 2;
    s.seqlens = {20, 40};
    return s;
  }
  void snapshot() {
    before.clear();
    for (const HostTensor* t : {&pb.out, &pool, &pool2, &ckpt}) before.push_back(t->snapshot());
  }
  bool unchanged() const {
    int i = 0;
    for (const HostTensor* t : {&pb.out, &pool, &pool2, &ckpt})
      if (t->snapshot() != before[i++]) return false;
    return true;
  }
};

struct ServingErrorCase {
  std::string name;
  std::function<void(ServingSetup&)> mutate;
  ErrorKind kind;
  std::string argument;
  std::string fragment;
};
void PrintTo(const ServingErrorCase& c, std::ostream* os) { *os << c.name; }

std::vector<ServingErrorCase> serving_error_cases() {
  auto set_index = [](HostTensor& t, int64_t i, int64_t v) {
    if (t.dtype() == DType::kInt32) reinterpret_cast<int32_t*>(t.data())[i] = static_cast<int32_t>(v);
    else reinterpret_cast<int64_t*>(t.data())[i] = v;
  };
  return {
      {"state_indices_dtype", [](ServingSetup& s) { s.p.state_indices.dtype = DType::kFloat32; }, ErrorKind::kType,
       "state_indices", "expected dtype int32 or int64, got float32"},
      {"state_indices_shape", [](ServingSetup& s) { s.p.state_indices.shape[0] = 1; }, ErrorKind::kValue,
       "state_indices", "expected shape [2] ([N], one slot per sequence), got [1]"},
      {"state_indices_without_states",
       [](ServingSetup& s) { s.p.initial_state = s.p.final_state = TensorRef{}; }, ErrorKind::kValue, "state_indices",
       "no pool to index"},
      {"state_indices_out_of_range", [set_index](ServingSetup& s) { set_index(s.idx, 1, 4); }, ErrorKind::kValue,
       "state_indices", "expected slots in [0, 4)"},
      {"state_indices_duplicate", [set_index](ServingSetup& s) { set_index(s.idx, 1, 2); }, ErrorKind::kValue,
       "state_indices", "expected distinct slots, got slot 2 at state_indices[0] and state_indices[1]"},
      {"state_indices_cuda", [](ServingSetup& s) { s.p.state_indices.device = flash_kda::DeviceType::kCUDA; },
       ErrorKind::kValue, "state_indices", "same device as q"},
      {"pool_shape", [](ServingSetup& s) { s.p.initial_state.shape[1] = 3; }, ErrorKind::kValue, "initial_state",
       "a pool [P, H, V, K] indexed by state_indices"},
      {"pool_dense_without_indices", [](ServingSetup& s) { s.p.state_indices = TensorRef{}; }, ErrorKind::kValue,
       "initial_state", "expected shape [2, 2, 128, 128] ([N, H, V, K]), got [4, 2, 128, 128]"},
      {"final_state_indices_without_state_indices",
       [](ServingSetup& s) {
         s.p.state_indices = TensorRef{};
         s.p.final_state_indices = s.fidx.ref();
       },
       ErrorKind::kValue, "final_state_indices", "requires state_indices"},
      {"final_state_indices_dtype",
       [](ServingSetup& s) {
         s.p.final_state_indices = s.fidx.ref();
         s.p.final_state_indices.dtype = DType::kBFloat16;
       },
       ErrorKind::kType, "final_state_indices", "expected dtype int32 or int64"},
      {"final_state_indices_duplicate",
       [set_index](ServingSetup& s) {
         s.p.final_state = s.pool2.ref();
         set_index(s.fidx, 0, 3);
         s.p.final_state_indices = s.fidx.ref();
       },
       ErrorKind::kValue, "final_state_indices", "expected distinct slots"},
      {"final_state_indices_race",
       [set_index](ServingSetup& s) {
         set_index(s.fidx, 0, 0);  // sequence 0 writes slot 0, which sequence 1 reads
         s.p.final_state_indices = s.fidx.ref();
       },
       ErrorKind::kValue, "final_state_indices", "is a slot another sequence reads"},
      {"zero_start_dtype", [](ServingSetup& s) { s.p.zero_start.dtype = DType::kInt32; }, ErrorKind::kType,
       "zero_start", "expected dtype bool or uint8, got int32"},
      {"zero_start_shape", [](ServingSetup& s) { s.p.zero_start.shape[0] = 3; }, ErrorKind::kValue, "zero_start",
       "expected shape [2]"},
      {"checkpoint_interval_zero", [](ServingSetup& s) { s.p.checkpoint_interval = 0; }, ErrorKind::kValue,
       "checkpoint_interval", "expected a positive multiple of 16 (with checkpoints), got 0"},
      {"checkpoint_interval_not_multiple", [](ServingSetup& s) { s.p.checkpoint_interval = 24; }, ErrorKind::kValue,
       "checkpoint_interval", "got 24"},
      {"checkpoint_interval_without_tensors",
       [](ServingSetup& s) { s.p.checkpoints = s.p.checkpoint_offsets = TensorRef{}; }, ErrorKind::kValue,
       "checkpoints", "required tensor is missing"},
      {"checkpoint_offsets_missing", [](ServingSetup& s) { s.p.checkpoint_offsets = TensorRef{}; }, ErrorKind::kValue,
       "checkpoint_offsets", "required tensor is missing"},
      {"checkpoints_dtype", [](ServingSetup& s) { s.p.checkpoints.dtype = DType::kFloat16; }, ErrorKind::kType,
       "checkpoints", "expected dtype bfloat16 or float32, got float16"},
      {"checkpoints_shape", [](ServingSetup& s) { s.p.checkpoints.shape[1] = 1; }, ErrorKind::kValue, "checkpoints",
       "[num_checkpoints, H, V, K]"},
      {"checkpoint_offsets_count", [set_index](ServingSetup& s) { set_index(s.offs, 1, 2); }, ErrorKind::kValue,
       "checkpoint_offsets", "sequence 0 has 20 tokens, so expected checkpoint_offsets[1] - checkpoint_offsets[0] "
                             "== floor(length / checkpoint_interval) = 1, got 2"},
      {"checkpoint_offsets_past_end",
       [set_index](ServingSetup& s) {
         set_index(s.offs, 0, 1);
         set_index(s.offs, 1, 2);
         set_index(s.offs, 2, 4);
       },
       ErrorKind::kValue, "checkpoint_offsets", "expected checkpoint_offsets[N] <= checkpoints.shape[0] = 3, got 4"},
      {"checkpoint_offsets_negative",
       [set_index](ServingSetup& s) {
         set_index(s.offs, 0, -1);
       },
       ErrorKind::kValue, "checkpoint_offsets", "expected checkpoint_offsets[0] >= 0"},
      {"checkpoint_offsets_shape", [](ServingSetup& s) { s.p.checkpoint_offsets.shape[0] = 2; }, ErrorKind::kValue,
       "checkpoint_offsets", "[N + 1], like cu_seqlens"},
      {"checkpoints_overlap_out", [](ServingSetup& s) { s.p.checkpoints.data = s.pb.out.data(); }, ErrorKind::kValue,
       "checkpoints", "must not overlap out"},
      {"checkpoints_overlap_pool", [](ServingSetup& s) { s.p.checkpoints.data = s.pool.data(); }, ErrorKind::kValue,
       "checkpoints", "must not overlap"},
      {"cu_seqlens_int32_bad_contents",
       [](ServingSetup& s) {
         s.cu32 = index_tensor(DType::kInt32, {0, 30, 20});
         s.p.cu_seqlens = s.cu32.ref();
       },
       ErrorKind::kValue, "cu_seqlens", "expected non-decreasing offsets"},
  };
}

class ServingValidation : public ::testing::TestWithParam<ServingErrorCase> {};

TEST_P(ServingValidation, RefusedAndNothingWritten) {
  const ServingErrorCase& c = GetParam();
  ServingSetup s;
  c.mutate(s);
  s.snapshot();
  for (int entry = 0; entry < 2; ++entry) {
    try {
      if (entry == 0) flash_kda::fwd(s.p, nullptr, 0);
      else flash_kda::validate_fwd(s.p);
      ADD_FAILURE() << "no error thrown";
    } catch (const flash_kda::Error& e) {
      expect_error_message(e, c.kind, c.argument, {c.fragment});
    }
  }
  EXPECT_TRUE(s.unchanged()) << "a refused call wrote something";
}

INSTANTIATE_TEST_SUITE_P(Fwd, ServingValidation, ::testing::ValuesIn(serving_error_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(ServingValidation, SetupIsAccepted) {
  ServingSetup s;
  ASSERT_NO_THROW(flash_kda::fwd(s.p, nullptr, 0));
  EXPECT_EQ(s.pb.out.count_nan(), 0);
  // offsets 0..3: all three checkpoint rows written
  EXPECT_EQ(s.ckpt.count_nan(), 0);
  ASSERT_NO_THROW(flash_kda::reference_fwd(s.p));
}

}  // namespace
}  // namespace kda_test
