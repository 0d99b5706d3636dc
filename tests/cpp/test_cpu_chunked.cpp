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
void check_against_reference(Problem& pb) {
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
  EXPECT_LT(e_out32, kFp32Tol) << "out (fp32) vs oracle";
  EXPECT_LT(e_state32, kFp32Tol) << "final_state (fp32) vs oracle";
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
      EXPECT_LT(e, kFp32Tol) << "final_state (fp32) vs oracle";
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

}  // namespace
}  // namespace kda_test
