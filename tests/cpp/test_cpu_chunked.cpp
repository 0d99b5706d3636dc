// The CPU chunked backend (what flash_kda::fwd runs on host tensors) against
// the float64 token-by-token oracle (flash_kda::reference_fwd), on fresh
// random inputs.
//
// Each case makes three calls on the same inputs:
//   1. flash_kda::fwd            bf16 out, final state in the case's dtype
//   2. cpu::chunked_forward      the same algorithm with fp32 out and fp32
//                                final state: its error is the algorithm's
//   3. flash_kda::reference_fwd  fp64 out and fp64 final state
// and checks: (2) within 1e-4 relative L2 of (3); (1) is exactly (2) rounded
// to bf16 (so the public result is the fp32 algorithm rounded once); (1) within
// bf16 rounding of (3); and every output element written (NaN poison gone).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <ostream>
#include <string>
#include <vector>

#include "cpu/cpu_backend.h"
#include "test_util.h"

namespace kda_test {
namespace {

// fp32 algorithm vs the fp64 oracle.
constexpr double kFp32Tol = 1e-4;
// A bf16 result vs the fp64 oracle: one rounding to 8 significant bits has a
// relative RMS error of about 1.6e-3.
constexpr double kBf16Tol = 8e-3;

// Largest errors seen in this process, printed at the end.
struct MaxErrors : ::testing::Environment {
  double out_fp32 = 0, state_fp32 = 0, out_bf16 = 0, state_bf16 = 0;
  void TearDown() override {
    std::printf("[ max rel L2 ] out fp32 %.3g, final_state fp32 %.3g, out bf16 %.3g, final_state bf16 %.3g\n",
                out_fp32, state_fp32, out_bf16, state_bf16);
  }
};
MaxErrors* const g_max = static_cast<MaxErrors*>(::testing::AddGlobalTestEnvironment(new MaxErrors));

void expect_all_written(const HostTensor& t, const char* what) {
  EXPECT_EQ(t.count_nan(), 0) << what << ": NaN (poison not overwritten, or a NaN produced)";
}

// The three calls and every check, on one problem.
void check_against_reference(Problem& pb, double fp32_tol = kFp32Tol) {
  SCOPED_TRACE(pb.describe());
  const FwdParams p = pb.params();
  ASSERT_NO_THROW(flash_kda::fwd(p, nullptr, 0));
  expect_all_written(pb.out, "out");
  if (pb.final_state.present()) expect_all_written(pb.final_state, "final_state");

  HostTensor out32(DType::kFloat32, pb.out.shape());
  HostTensor final32(DType::kFloat32, {pb.N, pb.H, kDim, kDim});
  out32.poison();
  final32.poison();
  FwdParams p32 = p;
  p32.out = out32.ref();
  p32.final_state = final32.ref();
  flash_kda::cpu::chunked_forward(p32, flash_kda::validate_fwd(p));
  expect_all_written(out32, "out (fp32 call)");
  expect_all_written(final32, "final_state (fp32 call)");

  const ReferenceResult ref = run_reference(pb);
  ASSERT_EQ(ref.out.count_nan(), 0) << "the oracle produced NaN";
  ASSERT_EQ(ref.final_state.count_nan(), 0) << "the oracle produced NaN";

  const double e_out32 = rel_l2(out32, ref.out);
  const double e_state32 = rel_l2(final32, ref.final_state);
  EXPECT_LT(e_out32, fp32_tol) << "out (fp32) vs oracle";
  EXPECT_LT(e_state32, fp32_tol) << "final_state (fp32) vs oracle";
  g_max->out_fp32 = std::max(g_max->out_fp32, e_out32);
  g_max->state_fp32 = std::max(g_max->state_fp32, e_state32);

  EXPECT_TRUE(bit_equal(pb.out, out32.converted(DType::kBFloat16)))
      << "bf16 out is not the fp32 result rounded once";
  const double e_out16 = rel_l2(pb.out, ref.out);
  EXPECT_LT(e_out16, kBf16Tol) << "out (bf16) vs oracle";
  g_max->out_bf16 = std::max(g_max->out_bf16, e_out16);

  if (pb.final_state.present()) {
    EXPECT_TRUE(bit_equal(pb.final_state, final32.converted(pb.final_state.dtype())))
        << "final_state is not the fp32 state stored once";
    const double e = rel_l2(pb.final_state, ref.final_state);
    if (pb.final_state.dtype() == DType::kFloat32) {
      EXPECT_LT(e, fp32_tol) << "final_state (fp32) vs oracle";
    } else {
      EXPECT_LT(e, kBf16Tol) << "final_state (bf16) vs oracle";
      g_max->state_bf16 = std::max(g_max->state_bf16, e);
    }
  }
}

// ---------------------------------------------------------------------------
// The case matrix.
enum class Shape { kT1, kT15, kT16, kT17, kT300, kVarlen };
constexpr Shape kAllShapes[] = {Shape::kT1, Shape::kT15, Shape::kT16, Shape::kT17, Shape::kT300, Shape::kVarlen};
constexpr double kLowerBounds[] = {-5.0, -1.0, 0.0};
// Varlen lengths: a 1-token sequence, an exact chunk, a chunk + 1, an empty
// sequence and a long one (many chunks, with a tail).
const std::vector<int64_t> kVarlenLengths = {1, 16, 17, 0, 300};

struct Case {
  GateDist gate;
  BiasDist bias;
  double lower_bound;
  Shape shape;
  DType initial, final_;
};

ProblemSpec spec_of(const Case& c) {
  ProblemSpec s;
  s.gate = c.gate;
  s.bias = c.bias;
  s.lower_bound = c.lower_bound;
  s.initial = c.initial;
  s.final_ = c.final_;
  s.H = 2;
  switch (c.shape) {
    case Shape::kT1: s.T = 1; break;
    case Shape::kT15: s.T = 15; break;
    case Shape::kT16: s.T = 16; break;
    case Shape::kT17: s.T = 17; break;
    case Shape::kT300: s.T = 300; break;
    case Shape::kVarlen: s.seqlens = kVarlenLengths; break;
  }
  if (c.shape != Shape::kVarlen) s.B = 2;
  return s;
}

std::string shape_name(Shape s) {
  switch (s) {
    case Shape::kT1: return "T1";
    case Shape::kT15: return "T15";
    case Shape::kT16: return "T16";
    case Shape::kT17: return "T17";
    case Shape::kT300: return "T300";
    default: return "varlen";
  }
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  const std::string lb = c.lower_bound == 0 ? "lb0" : "lbm" + std::to_string(static_cast<int>(-c.lower_bound));
  return std::string(name(c.gate)) + "_" + name(c.bias) + "_" + lb + "_" + shape_name(c.shape) + "_init_" +
         short_dtype(c.initial) + "_final_" + short_dtype(c.final_);
}

// How gtest prints a Case (instead of its bytes).
void PrintTo(const Case& c, std::ostream* os) { *os << case_name(::testing::TestParamInfo<Case>(c, 0)); }

// Initial x final state dtypes the contract accepts (none, bf16, fp32; equal
// dtypes when both are given): 7 combinations.
std::vector<std::pair<DType, DType>> state_combos() {
  const DType options[] = {DType::kOther, DType::kBFloat16, DType::kFloat32};
  std::vector<std::pair<DType, DType>> r;
  for (DType i : options)
    for (DType f : options)
      if (i == DType::kOther || f == DType::kOther || i == f) r.emplace_back(i, f);
  return r;
}

// Every gate distribution x dt_bias distribution x lower_bound (90 cases), on
// the varlen problem (all tail/boundary lengths plus 300 tokens of recurrence),
// with fp32 initial and final state.
std::vector<Case> input_cases() {
  std::vector<Case> r;
  for (GateDist g : kAllGates)
    for (BiasDist b : kAllBiases)
      for (double lb : kLowerBounds) r.push_back({g, b, lb, Shape::kVarlen, DType::kFloat32, DType::kFloat32});
  return r;
}

// Every shape x state-dtype combination (42 cases); the input distribution
// walks through the gate, dt_bias and lower_bound values so each appears.
std::vector<Case> shape_cases() {
  std::vector<Case> r;
  int i = 0;
  for (Shape s : kAllShapes)
    for (auto [init, fin] : state_combos()) {
      r.push_back({kAllGates[i % 5], kAllBiases[i % 6], kLowerBounds[i % 3], s, init, fin});
      ++i;
    }
  return r;
}

class ChunkedVsReference : public ::testing::TestWithParam<Case> {};

TEST_P(ChunkedVsReference, Matches) {
  Problem pb(spec_of(GetParam()));
  check_against_reference(pb);
}

INSTANTIATE_TEST_SUITE_P(Inputs, ChunkedVsReference, ::testing::ValuesIn(input_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(ShapesAndStates, ChunkedVsReference, ::testing::ValuesIn(shape_cases()), case_name);

// ---------------------------------------------------------------------------
// final_state may be the very same tensor as initial_state (updated in place):
// the result must equal that of separate buffers, bit for bit.
struct AliasCase {
  DType dtype;
  bool varlen;
};

class StateAliasing : public ::testing::TestWithParam<AliasCase> {};

TEST_P(StateAliasing, SameResultAsSeparateBuffers) {
  ProblemSpec s;
  s.initial = s.final_ = GetParam().dtype;
  s.lower_bound = -1.0;
  if (GetParam().varlen) {
    s.seqlens = {17, 0, 40};
  } else {
    s.T = 40;
  }
  Problem pb(s);
  SCOPED_TRACE(pb.describe());
  ASSERT_NO_THROW(flash_kda::fwd(pb.params(), nullptr, 0));

  HostTensor state = pb.initial_state.converted(pb.initial_state.dtype());  // exact copy
  HostTensor out(DType::kBFloat16, pb.out.shape());
  out.poison();
  FwdParams p = pb.params();
  p.out = out.ref();
  p.initial_state = p.final_state = state.ref();
  ASSERT_NO_THROW(flash_kda::fwd(p, nullptr, 0));
  expect_all_written(out, "out");
  expect_all_written(state, "final_state (in place)");
  EXPECT_TRUE(bit_equal(out, pb.out)) << "out differs when the state is updated in place";
  EXPECT_TRUE(bit_equal(state, pb.final_state)) << "final state differs when updated in place";
}

TEST_P(StateAliasing, OracleSameResultAsSeparateBuffers) {
  ProblemSpec s;
  s.initial = DType::kFloat64;  // the oracle takes fp64 states
  s.final_ = DType::kFloat64;
  s.lower_bound = -1.0;
  if (GetParam().varlen) {
    s.seqlens = {17, 0, 40};
  } else {
    s.T = 40;
  }
  Problem pb(s);
  SCOPED_TRACE(pb.describe());
  const ReferenceResult separate = run_reference(pb);

  HostTensor state = pb.initial_state.converted(DType::kFloat64);
  HostTensor out(DType::kFloat64, pb.out.shape());
  FwdParams p = pb.params();
  p.out = out.ref();
  p.initial_state = p.final_state = state.ref();
  ASSERT_NO_THROW(flash_kda::reference_fwd(p));
  EXPECT_TRUE(bit_equal(out, separate.out));
  EXPECT_TRUE(bit_equal(state, separate.final_state));
}

INSTANTIATE_TEST_SUITE_P(States, StateAliasing,
                         ::testing::Values(AliasCase{DType::kBFloat16, false}, AliasCase{DType::kFloat32, false},
                                           AliasCase{DType::kBFloat16, true}, AliasCase{DType::kFloat32, true}),
                         [](const ::testing::TestParamInfo<AliasCase>& info) {
                           return std::string(short_dtype(info.param.dtype)) +
                                  (info.param.varlen ? "_varlen" : "_fixed");
                         });

// ---------------------------------------------------------------------------
// A zero-length sequence leaves its state as it was: final == initial (bit for
// bit), or zeros without an initial state. Also when updated in place.
class ZeroLengthSequence : public ::testing::TestWithParam<DType> {};

TEST_P(ZeroLengthSequence, FinalEqualsInitial) {
  const DType dtype = GetParam();
  ProblemSpec s;
  s.seqlens = {0, 5, 0, 20, 0};
  s.initial = dtype;
  s.final_ = dtype == DType::kOther ? DType::kFloat32 : dtype;
  Problem pb(s);
  SCOPED_TRACE(pb.describe());
  ASSERT_NO_THROW(flash_kda::fwd(pb.params(), nullptr, 0));
  expect_all_written(pb.out, "out");
  expect_all_written(pb.final_state, "final_state");

  const int64_t per_head = kDim * kDim, per_seq = pb.H * per_head;
  for (int64_t n : {0, 2, 4}) {
    int64_t mismatches = 0;
    for (int64_t i = n * per_seq; i < (n + 1) * per_seq; ++i) {
      const double want = pb.initial_state.present() ? pb.initial_state.get(i) : 0.0;
      mismatches += pb.final_state.get(i) == want ? 0 : 1;
    }
    EXPECT_EQ(mismatches, 0) << "sequence " << n << " (empty) changed its state";
  }
  // ... while the non-empty ones did move.
  if (pb.initial_state.present()) {
    double moved = 0;
    for (int64_t i = per_seq; i < 2 * per_seq; ++i) moved += std::fabs(pb.final_state.get(i) - pb.initial_state.get(i));
    EXPECT_GT(moved, 0.0);
  }

  // Against the oracle as well (the fp32 comparison of the matrix applies).
  if (dtype != DType::kBFloat16) {
    const ReferenceResult ref = run_reference(pb);
    EXPECT_LT(rel_l2(pb.final_state, ref.final_state), kFp32Tol);
  }
}

INSTANTIATE_TEST_SUITE_P(States, ZeroLengthSequence,
                         ::testing::Values(DType::kOther, DType::kBFloat16, DType::kFloat32),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string("init_") + short_dtype(info.param);
                         });

// ---------------------------------------------------------------------------
// The unbounded gates (issue #8): Kimi-Linear's softplus gate
// -exp(A_log) * softplus(g + dt_bias) and a precomputed log decay g, on the
// inputs that break a naive chunked form (exp(-cumsum) overflows): A_log up
// to 4 (rates of 55 per unit of softplus), logits N(0, 8^2) and constant
// +-20, dt_bias +-8, log decays down to -1e4. The fast backends clamp each
// token's log decay at kMinTokenLogDecay = -10; the oracle does not, so the
// comparison also bounds the clamp's effect: a token that should erase the
// state leaves e^-10 = 4.5e-5 of it, which is relative to the *old* state; with
// these tests' N(0, 1) initial states (norm ~128 per head, against ~5 of new
// content) that reaches ~1.3e-3 after one token. fp32 tolerance 2e-3 (the
// lower-bounded gate's 1e-4 holds whenever no token decays by more than e^-10).
constexpr double kUnboundedFp32Tol = 2e-3;

struct GateCase {
  flash_kda::GateMode mode;
  double a_log;
  GateDist gate;
  BiasDist bias;
  DType g_dtype;
  bool with_dt_bias;
  Shape shape;
  DType initial, final_;
};

std::string gate_case_name(const ::testing::TestParamInfo<GateCase>& info) {
  const GateCase& c = info.param;
  std::string a = c.a_log < 0 ? "Am" + std::to_string(static_cast<int>(-c.a_log))
                              : "A" + std::to_string(static_cast<int>(c.a_log));
  return std::string(flash_kda::gate_mode_name(c.mode)) + "_" + a + "_" + name(c.gate) + "_" +
         (c.with_dt_bias ? name(c.bias) : "nodt") + "_g" + short_dtype(c.g_dtype) + "_" + shape_name(c.shape) +
         "_init_" + short_dtype(c.initial) + "_final_" + short_dtype(c.final_);
}
void PrintTo(const GateCase& c, std::ostream* os) { *os << gate_case_name(::testing::TestParamInfo<GateCase>(c, 0)); }

ProblemSpec gate_spec(const GateCase& c) {
  ProblemSpec s = spec_of({c.gate, c.bias, -5.0, c.shape, c.initial, c.final_});
  s.gate_mode = c.mode;
  s.a_log = c.a_log;
  s.g_dtype = c.g_dtype;
  s.with_dt_bias = c.with_dt_bias;
  return s;
}

std::vector<GateCase> softplus_cases() {
  using flash_kda::GateMode;
  std::vector<GateCase> r;
  for (double a : {-2.0, 0.0, 2.0, 4.0})
    for (GateDist g : {GateDist::kNormal8, GateDist::kPlus20, GateDist::kMinus20})
      for (BiasDist b : {BiasDist::kPlus8, BiasDist::kMinus8})
        r.push_back({GateMode::kSoftplus, a, g, b, DType::kBFloat16, true, Shape::kVarlen, DType::kFloat32,
                     DType::kFloat32});
  // every state combination and shape once; no dt_bias (zeros)
  int i = 0;
  for (Shape sh : kAllShapes)
    for (auto [init, fin] : state_combos()) {
      const double a = (i % 4) * 2.0 - 2.0;
      r.push_back({GateMode::kSoftplus, a, i % 2 ? GateDist::kNormal8 : GateDist::kPlus20, BiasDist::kZero,
                   DType::kBFloat16, (i % 3) != 0, sh, init, fin});
      ++i;
    }
  return r;
}

std::vector<GateCase> precomputed_cases() {
  using flash_kda::GateMode;
  std::vector<GateCase> r;
  for (DType gd : {DType::kBFloat16, DType::kFloat32})
    for (Shape sh : kAllShapes)
      for (auto [init, fin] : state_combos())
        if (sh == Shape::kVarlen || init == DType::kFloat32)
          r.push_back({GateMode::kPrecomputed, 0.0, GateDist::kLogDecayMix, BiasDist::kZero, gd, false, sh, init,
                       fin});
  return r;
}

class UnboundedGate : public ::testing::TestWithParam<GateCase> {};

TEST_P(UnboundedGate, MatchesReference) {
  Problem pb(gate_spec(GetParam()));
  check_against_reference(pb, kUnboundedFp32Tol);
}

INSTANTIATE_TEST_SUITE_P(Softplus, UnboundedGate, ::testing::ValuesIn(softplus_cases()), gate_case_name);
INSTANTIATE_TEST_SUITE_P(Precomputed, UnboundedGate, ::testing::ValuesIn(precomputed_cases()), gate_case_name);

// A long sequence (8192 tokens = 512 chunks) of the softplus gate with the
// largest rate: the state decays and refills across many chunks.
TEST(UnboundedGateLong, Softplus8192) {
  ProblemSpec s;
  s.B = 1;
  s.T = 8192;
  s.H = 1;
  s.gate_mode = flash_kda::GateMode::kSoftplus;
  s.a_log = 2.0;
  s.gate = GateDist::kNormal8;
  s.bias = BiasDist::kMinus8;
  s.initial = s.final_ = DType::kFloat32;
  Problem pb(s);
  check_against_reference(pb, kUnboundedFp32Tol);
}

// The true state decays to exactly zero (v = 0, log decay -1e4 per token):
// the result must be finite and tiny, never NaN or Inf (a naive exp(-G)
// factorisation gives Inf * 0 = NaN here).
TEST(UnboundedGateLong, StateDecaysToZero) {
  ProblemSpec s;
  s.B = 2;
  s.T = 40;
  s.gate_mode = flash_kda::GateMode::kPrecomputed;
  s.g_dtype = DType::kFloat32;
  s.initial = s.final_ = DType::kFloat32;
  Problem pb(s);
  for (int64_t i = 0; i < pb.g.numel(); ++i) pb.g.set(i, -1e4);
  for (int64_t i = 0; i < pb.v.numel(); ++i) pb.v.set(i, 0.0);
  SCOPED_TRACE(pb.describe());
  ASSERT_NO_THROW(flash_kda::fwd(pb.params(), nullptr, 0));
  expect_all_written(pb.out, "out");
  expect_all_written(pb.final_state, "final_state");
  const ReferenceResult ref = run_reference(pb);
  double max_state = 0, max_out = 0, max_ref = 0;
  for (int64_t i = 0; i < pb.final_state.numel(); ++i) {
    ASSERT_TRUE(std::isfinite(pb.final_state.get(i)));
    max_state = std::max(max_state, std::fabs(pb.final_state.get(i)));
    max_ref = std::max(max_ref, std::fabs(ref.final_state.get(i)));
  }
  for (int64_t i = 0; i < pb.out.numel(); ++i) {
    ASSERT_TRUE(std::isfinite(pb.out.get(i)));
    max_out = std::max(max_out, std::fabs(pb.out.get(i)));
  }
  EXPECT_EQ(max_ref, 0.0) << "the oracle's state should underflow to exactly 0";
  EXPECT_LT(max_state, 1e-30);
  EXPECT_LT(max_out, 1e-3);  // first token: exp(-10) of the N(0,1) initial state at most
}

}  // namespace
}  // namespace kda_test
