// Every refusal of flash_kda::fwd (src/api/validate.cpp): the right
// flash_kda::Error (kind, argument, a message naming the argument and what
// was given), and nothing written anywhere (all buffers bit-identical after
// the call; outputs hold their NaN poison).
#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace kda_test {
namespace {

using flash_kda::DeviceType;
using flash_kda::ErrorKind;

using Mutation = std::function<void(Problem&, FwdParams&, Scratch&)>;

struct ErrorCase {
  std::string name;
  bool varlen;  // start from the varlen problem (seqlens {2, 3}) instead of B=2, T=5
  Mutation mutate;
  ErrorKind kind;
  std::string argument;
  std::vector<std::string> fragments;  // the message must contain each
};

std::ostream& operator<<(std::ostream& os, const ErrorCase& c) { return os << c.name; }

// The tensor arguments by name.
TensorRef& field(FwdParams& p, const std::string& n) {
  if (n == "q") return p.q;
  if (n == "k") return p.k;
  if (n == "v") return p.v;
  if (n == "g") return p.g;
  if (n == "beta") return p.beta;
  if (n == "out") return p.out;
  if (n == "A_log") return p.A_log;
  if (n == "dt_bias") return p.dt_bias;
  if (n == "initial_state") return p.initial_state;
  if (n == "final_state") return p.final_state;
  if (n == "cu_seqlens") return p.cu_seqlens;
  throw std::logic_error("no tensor argument " + n);
}

const std::vector<std::string> kTensorNames = {"q",       "k",       "v",           "g",
                                               "beta",    "out",     "A_log",       "dt_bias",
                                               "initial_state", "final_state", "cu_seqlens"};
bool needs_varlen(const std::string& n) { return n == "cu_seqlens"; }

// A poisoned buffer of the same shape in another dtype.
void retype(TensorRef& t, DType dtype, Scratch& s) {
  const DeviceType device = t.device;
  t = s.make(dtype, std::vector<int64_t>(t.shape, t.shape + t.ndim)).ref();
  t.device = device;
}

unsigned char* bytes_of(const TensorRef& t) { return static_cast<unsigned char*>(t.data); }

std::string hex_low_byte(const void* ptr) {
  std::ostringstream s;
  s << "0x" << std::hex << (reinterpret_cast<uintptr_t>(ptr) & 0xff);
  return s.str();
}

std::vector<ErrorCase> error_cases() {
  std::vector<ErrorCase> cases;
  auto add = [&](std::string name, bool varlen, Mutation m, ErrorKind kind, std::string arg,
                 std::vector<std::string> fragments) {
    cases.push_back({std::move(name), varlen, std::move(m), kind, std::move(arg), std::move(fragments)});
  };

  // ---- missing required tensors, unsupported rank ---------------------------
  for (std::string n : {"q", "k", "v", "g", "beta", "out", "A_log", "dt_bias"})
    add("missing_" + n, false, [n](Problem&, FwdParams& p, Scratch&) { field(p, n) = TensorRef{}; },
        ErrorKind::kValue, n, {"required tensor is missing", "got None"});
  add("rank5_q", false, [](Problem&, FwdParams& p, Scratch&) { p.q.ndim = 5; }, ErrorKind::kValue, "q",
      {"rank 5 is not supported"});

  // ---- wrong dtype of each tensor (kType) ----------------------------------
  struct DtypeCase {
    std::string tensor;
    DType given;
    std::string expected;
  };
  const std::vector<DtypeCase> dtype_cases = {
      {"q", DType::kFloat32, "bfloat16"},          {"q", DType::kOther, "bfloat16"},
      {"k", DType::kFloat16, "bfloat16"},          {"v", DType::kFloat32, "bfloat16"},
      {"g", DType::kFloat64, "bfloat16"},          {"beta", DType::kFloat32, "bfloat16"},
      {"out", DType::kFloat32, "bfloat16"},        {"out", DType::kFloat64, "bfloat16"},
      {"A_log", DType::kBFloat16, "float32"},      {"dt_bias", DType::kFloat64, "float32"},
      {"initial_state", DType::kFloat64, "bfloat16 or float32"},
      {"final_state", DType::kFloat16, "bfloat16 or float32"},
      {"cu_seqlens", DType::kFloat32, "int64 or int32"},
  };
  for (const auto& d : dtype_cases) {
    const std::string given = flash_kda::dtype_name(d.given);
    add("dtype_" + d.tensor + "_" + short_dtype(d.given), needs_varlen(d.tensor),
        [d](Problem&, FwdParams& p, Scratch& s) { retype(field(p, d.tensor), d.given, s); }, ErrorKind::kType,
        d.tensor, {"expected dtype " + d.expected + ", got " + given});
  }
  // Both states given with different dtypes.
  add("states_dtypes_differ", false,
      [](Problem&, FwdParams& p, Scratch& s) { retype(p.initial_state, DType::kBFloat16, s); }, ErrorKind::kType,
      "final_state", {"same dtype as initial_state (bfloat16), got float32"});

  // ---- wrong rank -----------------------------------------------------------
  struct RankCase {
    std::string tensor;
    std::vector<int64_t> shape;
    std::string fragment;
  };
  const std::vector<RankCase> rank_cases = {
      {"q", {2, 5, 256}, "expected a 4-D tensor, got 3-D with shape [2, 5, 256]"},
      {"k", {2, 5, 256}, "expected a 4-D tensor, got 3-D"},
      {"v", {10, 2, 128}, "expected a 4-D tensor, got 3-D"},
      {"g", {2, 5, 2}, "expected a 4-D tensor, got 3-D"},
      {"beta", {2, 5, 2, 1}, "expected a 3-D tensor, got 4-D"},
      {"out", {2, 1280}, "expected a 4-D tensor, got 2-D"},
      {"A_log", {1, 2}, "expected a 1-D tensor, got 2-D"},
      {"dt_bias", {256}, "expected a 2-D tensor, got 1-D"},
      {"initial_state", {2, 2, 16384}, "expected a 4-D tensor, got 3-D"},
      {"final_state", {4, 128, 128}, "expected a 4-D tensor, got 3-D"},
      {"cu_seqlens", {1, 3}, "expected a 1-D tensor, got 2-D"},
  };
  for (const auto& r : rank_cases) {
    add("rank_" + r.tensor, needs_varlen(r.tensor),
        [r](Problem&, FwdParams& p, Scratch&) { reshape(field(p, r.tensor), r.shape); }, ErrorKind::kValue,
        r.tensor, {r.fragment});
  }

  // ---- head sizes and shape mismatches --------------------------------------
  add("head_size_K_64", false, [](Problem&, FwdParams& p, Scratch&) { reshape(p.q, {2, 5, 2, 64}); },
      ErrorKind::kValue, "q", {"K = 64 is not supported", "expected K = 128"});
  add("head_size_V_64", false, [](Problem&, FwdParams& p, Scratch&) { reshape(p.v, {2, 5, 2, 64}); },
      ErrorKind::kValue, "v", {"V = 64 is not supported", "expected V = 128"});
  struct ShapeCase {
    std::string name, tensor;
    bool varlen;
    std::vector<int64_t> shape;
    std::string fragment;
  };
  const std::vector<ShapeCase> shape_cases = {
      {"k", "k", false, {2, 4, 2, 128}, "expected shape [2, 5, 2, 128] (same as q), got [2, 4, 2, 128]"},
      {"g", "g", false, {1, 5, 2, 128}, "expected shape [2, 5, 2, 128] (same as q), got [1, 5, 2, 128]"},
      {"v", "v", false, {2, 5, 1, 128}, "expected shape [2, 5, 2, 128] ([B, T, H, V] with B, T, H of q), got [2, 5, 1, 128]"},
      {"beta", "beta", false, {2, 5, 1}, "expected shape [2, 5, 2] ([B, T, H] of q), got [2, 5, 1]"},
      {"out", "out", false, {2, 4, 2, 128}, "expected shape [2, 5, 2, 128] (same as v), got [2, 4, 2, 128]"},
      {"A_log", "A_log", false, {1}, "expected shape [2] ([H]), got [1]"},
      {"dt_bias", "dt_bias", false, {2, 64}, "expected shape [2, 128] ([H, K]), got [2, 64]"},
      {"initial_state", "initial_state", false, {1, 2, 128, 128},
       "expected shape [2, 2, 128, 128] ([N, H, V, K]), got [1, 2, 128, 128]"},
      {"final_state", "final_state", false, {2, 1, 128, 128}, "got [2, 1, 128, 128]"},
      // With cu_seqlens N comes from it (2 sequences), not from B (1).
      {"varlen_initial_state_N", "initial_state", true, {1, 2, 128, 128},
       "expected shape [2, 2, 128, 128] ([N, H, V, K]), got [1, 2, 128, 128]"},
      {"varlen_final_state_N", "final_state", true, {1, 2, 128, 128}, "got [1, 2, 128, 128]"},
  };
  for (const auto& sc : shape_cases)
    add("shape_" + sc.name, sc.varlen,
        [sc](Problem&, FwdParams& p, Scratch&) { reshape(field(p, sc.tensor), sc.shape); }, ErrorKind::kValue,
        sc.tensor, {sc.fragment});

  // ---- layout: negative sizes, strides, null and misaligned pointers --------
  add("negative_size", false,
      [](Problem&, FwdParams& p, Scratch&) {
        for (TensorRef* t : {&p.q, &p.k, &p.v, &p.g, &p.out}) reshape(*t, {2, -1, 2, 128});
        reshape(p.beta, {2, -1, 2});
      },
      ErrorKind::kValue, "q", {"negative size in shape [2, -1, 2, 128]"});
  for (const std::string& n : kTensorNames) {
    if (n == "beta") continue;  // read through its strides: any non-negative strides
    add("non_contiguous_" + n, needs_varlen(n),
        [n](Problem&, FwdParams& p, Scratch&) {
          TensorRef& t = field(p, n);
          t.strides[t.ndim - 1] = 2;  // every other element of the last dim
        },
        ErrorKind::kValue, n, {"expected a contiguous (row-major) tensor, got strides that are not"});
  }
  add("negative_stride_beta", false, [](Problem&, FwdParams& p, Scratch&) { p.beta.strides[1] = -2; },
      ErrorKind::kValue, "beta", {"expected non-negative strides, got stride -2 in dimension 1"});
  add("non_contiguous_q_transposed", false,
      [](Problem&, FwdParams& p, Scratch&) { std::swap(p.q.strides[1], p.q.strides[2]); }, ErrorKind::kValue,
      "q", {"contiguous"});
  for (std::string n : {"q", "A_log", "final_state"})
    add("null_data_" + n, false, [n](Problem&, FwdParams& p, Scratch&) { field(p, n).data = nullptr; },
        ErrorKind::kValue, n, {"data pointer is null"});
  struct AlignCase {
    std::string tensor;
    int offset;          // bytes added to the (64-aligned) pointer
    std::string needed;  // alignment in the message
  };
  const std::vector<AlignCase> align_cases = {
      {"q", 2, "16"},      {"k", 8, "16"},       {"v", 2, "16"},
      {"g", 4, "16"},      {"out", 2, "16"},     {"beta", 1, "2"},
      {"A_log", 2, "4"},   {"dt_bias", 2, "4"},  {"initial_state", 8, "16"},
      {"final_state", 4, "16"}, {"cu_seqlens", 4, "8"},
  };
  for (const auto& a : align_cases)
    cases.push_back({"misaligned_" + a.tensor, needs_varlen(a.tensor),
                     [a](Problem&, FwdParams& p, Scratch&) {
                       TensorRef& t = field(p, a.tensor);
                       t.data = bytes_of(t) + a.offset;
                     },
                     ErrorKind::kValue, a.tensor,
                     // the address's low byte is checked in the test body
                     {"data pointer must be " + a.needed + "-byte aligned, got address ending in 0x"}});

  // ---- devices: TensorRefs marked CUDA over host memory; the check must fire
  // before anything dereferences them ----------------------------------------
  for (const std::string& n : kTensorNames) {
    if (n == "q") continue;
    add("device_cuda_" + n, needs_varlen(n),
        [n](Problem&, FwdParams& p, Scratch&) { field(p, n).device = DeviceType::kCUDA; }, ErrorKind::kValue, n,
        {"expected a tensor on the same device as q (cpu:0), got cuda:0"});
  }
  add("device_cuda_q_only", false, [](Problem&, FwdParams& p, Scratch&) { p.q.device = DeviceType::kCUDA; },
      ErrorKind::kValue, "k", {"same device as q (cuda:0), got cpu:0"});
  add("device_id_out", false, [](Problem&, FwdParams& p, Scratch&) { p.out.device_id = 1; }, ErrorKind::kValue,
      "out", {"same device as q (cpu:0), got cpu:1"});

  // ---- cu_seqlens -------------------------------------------------------------
  auto set_cu = [](std::vector<int64_t> values) {
    return [values](Problem&, FwdParams& p, Scratch&) {
      auto* cu = static_cast<int64_t*>(p.cu_seqlens.data);
      for (size_t i = 0; i < values.size(); ++i) cu[i] = values[i];
    };
  };
  add("cu_seqlens_one_entry", true, [](Problem&, FwdParams& p, Scratch&) { reshape(p.cu_seqlens, {1}); },
      ErrorKind::kValue, "cu_seqlens", {"expected at least 2 entries (N + 1 offsets), got 1"});
  add("cu_seqlens_empty", true, [](Problem&, FwdParams& p, Scratch&) { reshape(p.cu_seqlens, {0}); },
      ErrorKind::kValue, "cu_seqlens", {"expected at least 2 entries (N + 1 offsets), got 0"});
  add("cu_seqlens_not_from_0", true, set_cu({1, 2, 5}), ErrorKind::kValue, "cu_seqlens",
      {"expected cu_seqlens[0] == 0, got 1"});
  add("cu_seqlens_decreasing", true, set_cu({0, 4, 2}), ErrorKind::kValue, "cu_seqlens",
      {"non-decreasing", "got cu_seqlens[2] = 2 < cu_seqlens[1] = 4"});
  add("cu_seqlens_last_not_T", true, set_cu({0, 2, 4}), ErrorKind::kValue, "cu_seqlens",
      {"equal the total number of tokens T = 5, got 4"});
  add("cu_seqlens_last_past_T", true, set_cu({0, 2, 6}), ErrorKind::kValue, "cu_seqlens",
      {"T = 5, got 6"});
  add("cu_seqlens_with_batch_2", false,
      [](Problem&, FwdParams& p, Scratch& s) {
        HostTensor& cu = s.make(DType::kInt64, {3});
        const int64_t values[] = {0, 2, 5};
        for (int i = 0; i < 3; ++i) reinterpret_cast<int64_t*>(cu.data())[i] = values[i];
        p.cu_seqlens = cu.ref();
      },
      ErrorKind::kValue, "q", {"batch size must be 1", "got B = 2"});

  // ---- scalars ------------------------------------------------------------------
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  struct ScalarCase {
    std::string name;
    double value;
    std::string fragment;
  };
  for (const auto& sc : std::vector<ScalarCase>{{"below", -5.5, "got -5.5"},
                                                {"above", 0.5, "got 0.5"},
                                                {"tiny_positive", 1e-3, "got 0.001"},
                                                {"nan", nan, "nan"},
                                                {"minus_inf", -inf, "got -inf"}})
    add("lower_bound_" + sc.name, false, [sc](Problem&, FwdParams& p, Scratch&) { p.lower_bound = sc.value; },
        ErrorKind::kValue, "lower_bound", {"expected a value in [-5, 0]", sc.fragment});
  for (const auto& sc : std::vector<ScalarCase>{{"nan", nan, "nan"}, {"inf", inf, "got inf"},
                                                {"minus_inf", -inf, "got -inf"}})
    add("scale_" + sc.name, false, [sc](Problem&, FwdParams& p, Scratch&) { p.scale = sc.value; },
        ErrorKind::kValue, "scale", {"expected a finite number", sc.fragment});

  // ---- outputs overlapping inputs -------------------------------------------
  // The smaller range is placed inside the larger buffer, so that even a
  // validator that let the call through would write inside owned memory.
  for (std::string n : {"q", "k", "v", "g"})
    add("out_overlaps_" + n, false, [n](Problem&, FwdParams& p, Scratch&) { p.out.data = field(p, n).data; },
        ErrorKind::kValue, "out", {"out: must not overlap input " + n});
  for (std::string n : {"beta", "A_log", "dt_bias", "cu_seqlens"})
    add("out_overlaps_" + n, needs_varlen(n),
        [n](Problem&, FwdParams& p, Scratch&) { field(p, n).data = bytes_of(p.out) + 64; }, ErrorKind::kValue,
        "out", {"out: must not overlap input " + n});
  add("out_overlaps_initial_state", false,
      [](Problem&, FwdParams& p, Scratch&) { p.out.data = bytes_of(p.initial_state) + 1024; }, ErrorKind::kValue,
      "out", {"out: must not overlap input initial_state"});
  add("out_overlaps_final_state", false,
      [](Problem&, FwdParams& p, Scratch&) { p.out.data = bytes_of(p.final_state) + 1024; }, ErrorKind::kValue,
      "out", {"out: must not overlap final_state"});
  for (std::string n : {"q", "k", "v", "g", "beta", "A_log", "dt_bias", "cu_seqlens"})
    add("final_state_overlaps_" + n, needs_varlen(n),
        [n](Problem&, FwdParams& p, Scratch&) { field(p, n).data = bytes_of(p.final_state) + 1024; },
        ErrorKind::kValue, "final_state", {"final_state: must not overlap input " + n});
  add("final_state_overlaps_initial_state_partly", false,
      [](Problem& pb, FwdParams& p, Scratch& s) {
        // Both inside one arena, 1 KiB apart.
        HostTensor& arena = s.make(DType::kFloat32, {2 * pb.initial_state.numel()});
        p.initial_state.data = arena.data();
        p.final_state.data = arena.data() + 1024;
      },
      ErrorKind::kValue, "final_state",
      {"final_state: must not overlap input initial_state (it may only be the very same tensor)"});
  // ---- gate modes (softplus, precomputed) -----------------------------------
  using flash_kda::GateMode;
  add("gate_mode_unknown", false,
      [](Problem&, FwdParams& p, Scratch&) { p.gate_mode = static_cast<GateMode>(7); }, ErrorKind::kValue,
      "gate_mode", {"expected lower_bound, softplus or precomputed, got 7"});
  add("softplus_missing_A_log", false,
      [](Problem&, FwdParams& p, Scratch&) {
        p.gate_mode = GateMode::kSoftplus;
        p.A_log = TensorRef{};
      },
      ErrorKind::kValue, "A_log", {"required tensor is missing"});
  add("softplus_g_fp32", false,
      [](Problem&, FwdParams& p, Scratch& s) {
        p.gate_mode = GateMode::kSoftplus;
        retype(p.g, DType::kFloat32, s);
      },
      ErrorKind::kType, "g", {"expected dtype bfloat16, got float32"});
  add("softplus_dt_bias_shape", false,
      [](Problem&, FwdParams& p, Scratch&) {
        p.gate_mode = GateMode::kSoftplus;
        p.dt_bias.shape[0] = 3;
      },
      ErrorKind::kValue, "dt_bias", {"expected shape [2, 128]"});
  for (std::string n : {"A_log", "dt_bias"})
    add("precomputed_with_" + n, false,
        [n](Problem&, FwdParams& p, Scratch&) {
          p.gate_mode = GateMode::kPrecomputed;
          if (n == "dt_bias") p.A_log = TensorRef{};
        },
        ErrorKind::kValue, n,
        {"must be None with a precomputed gate"});
  add("precomputed_g_fp64", false,
      [](Problem&, FwdParams& p, Scratch& s) {
        p.gate_mode = GateMode::kPrecomputed;
        p.A_log = p.dt_bias = TensorRef{};
        retype(p.g, DType::kFloat64, s);
      },
      ErrorKind::kType, "g", {"expected dtype bfloat16 or float32, got float64"});
  return cases;
}

std::vector<const HostTensor*> buffers_of(const Problem& pb, const Scratch& s) {
  std::vector<const HostTensor*> r = {&pb.q,           &pb.k,           &pb.v,         &pb.g,
                                      &pb.beta,        &pb.out,         &pb.A_log,     &pb.dt_bias,
                                      &pb.initial_state, &pb.final_state, &pb.cu_seqlens};
  for (const HostTensor& t : s.buffers) r.push_back(&t);
  return r;
}

Problem base_problem(bool varlen) {
  ProblemSpec s;
  s.B = 2;
  s.T = 5;
  s.H = 2;
  if (varlen) s.seqlens = {2, 3};
  s.initial = s.final_ = DType::kFloat32;
  return Problem(s);
}

void expect_error(const std::function<void()>& call, const ErrorCase& c, const FwdParams& p) {
  try {
    call();
    ADD_FAILURE() << "no error thrown";
  } catch (const flash_kda::Error& e) {
    expect_error_message(e, c.kind, c.argument, c.fragments);
    const std::string msg = e.what();
    if (c.name.rfind("misaligned_", 0) == 0) {
      const std::string tensor = c.name.substr(std::string("misaligned_").size());
      const TensorRef& t = field(const_cast<FwdParams&>(p), tensor);
      EXPECT_NE(msg.find("ending in " + hex_low_byte(t.data)), std::string::npos);
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw something other than flash_kda::Error: " << e.what();
  }
}

class ValidationError : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ValidationError, RefusedAndNothingWritten) {
  const ErrorCase& c = GetParam();
  Problem pb = base_problem(c.varlen);
  Scratch scratch;
  FwdParams p = pb.params();
  c.mutate(pb, p, scratch);

  const auto buffers = buffers_of(pb, scratch);
  std::vector<std::vector<unsigned char>> before;
  for (const HostTensor* t : buffers) before.push_back(t->snapshot());

  expect_error([&] { flash_kda::fwd(p, nullptr, 0); }, c, p);
  // The same refusal from the other entry points that validate.
  expect_error([&] { flash_kda::fwd_workspace_size(p); }, c, p);
  expect_error([&] { flash_kda::validate_fwd(p); }, c, p);

  for (size_t i = 0; i < buffers.size(); ++i)
    EXPECT_TRUE(buffers[i]->snapshot() == before[i]) << "buffer " << i << " was written by a refused call";
  EXPECT_EQ(pb.out.count_nan(), pb.out.numel()) << "out lost its poison";
  EXPECT_EQ(pb.final_state.count_nan(), pb.final_state.numel()) << "final_state lost its poison";
}

INSTANTIATE_TEST_SUITE_P(Fwd, ValidationError, ::testing::ValuesIn(error_cases()),
                         [](const ::testing::TestParamInfo<ErrorCase>& info) { return info.param.name; });

// ---- accepted calls and the other entry points ----------------------------------

TEST(Validation, BaseProblemsAreAccepted) {
  for (bool varlen : {false, true}) {
    Problem pb = base_problem(varlen);
    EXPECT_NO_THROW(flash_kda::fwd(pb.params(), nullptr, 0)) << "varlen=" << varlen;
    EXPECT_EQ(pb.out.count_nan(), 0);
    EXPECT_EQ(pb.final_state.count_nan(), 0);
  }
}

TEST(Validation, FinalStateMayBeTheInitialState) {
  Problem pb = base_problem(false);
  FwdParams p = pb.params();
  p.final_state = p.initial_state;
  EXPECT_NO_THROW(flash_kda::fwd(p, nullptr, 0));
}

TEST(Validation, GateModesAcceptTheirOwnArguments) {
  using flash_kda::GateMode;
  {  // softplus: dt_bias optional, lower_bound unused (any value)
    Problem pb = base_problem(false);
    FwdParams p = pb.params();
    p.gate_mode = GateMode::kSoftplus;
    p.dt_bias = TensorRef{};
    p.lower_bound = -100.0;
    EXPECT_NO_THROW(flash_kda::fwd(p, nullptr, 0));
    EXPECT_EQ(pb.out.count_nan(), 0);
  }
  {  // precomputed: fp32 g, no A_log / dt_bias
    ProblemSpec s;
    s.T = 5;
    s.gate_mode = GateMode::kPrecomputed;
    s.g_dtype = DType::kFloat32;
    s.gate = GateDist::kLogDecayMix;
    Problem pb(s);
    EXPECT_NO_THROW(flash_kda::fwd(pb.params(), nullptr, 0));
    EXPECT_EQ(pb.out.count_nan(), 0);
  }
}

TEST(Validation, StatesAreOptional) {
  Problem pb = base_problem(true);
  FwdParams p = pb.params();
  p.initial_state = TensorRef{};
  p.final_state = TensorRef{};
  EXPECT_NO_THROW(flash_kda::fwd(p, nullptr, 0));
  EXPECT_EQ(pb.out.count_nan(), 0);
}

TEST(Validation, LowerBoundEndpointsAccepted) {
  for (double lb : {-5.0, 0.0}) {
    Problem pb = base_problem(false);
    FwdParams p = pb.params();
    p.lower_bound = lb;
    EXPECT_NO_THROW(flash_kda::fwd(p, nullptr, 0)) << "lower_bound=" << lb;
  }
}

TEST(Validation, WorkspaceSizeOnHostIsZero) {
  for (bool varlen : {false, true}) {
    Problem pb = base_problem(varlen);
    EXPECT_EQ(flash_kda::fwd_workspace_size(pb.params()), 0u);
  }
}

// All tensors marked CUDA (over host memory, never dereferenced).
FwdParams all_on_cuda(const Problem& pb) {
  FwdParams p = pb.params();
  for (const std::string& n : kTensorNames) {
    TensorRef& t = field(p, n);
    if (t.present()) t.device = DeviceType::kCUDA;
  }
  return p;
}

TEST(Validation, CudaTensorsInCpuOnlyBuildAreUnsupported) {
  if (flash_kda::cuda_backend_available(0)) GTEST_SKIP() << "this build has CUDA kernels";
  Problem pb = base_problem(false);
  const FwdParams p = all_on_cuda(pb);
  const auto out_before = pb.out.snapshot(), state_before = pb.final_state.snapshot();
  try {
    flash_kda::fwd(p, nullptr, 0);
    ADD_FAILURE() << "no error thrown";
  } catch (const flash_kda::Error& e) {
    EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(ErrorKind::kUnsupported));
    EXPECT_EQ(e.argument(), "q");
    EXPECT_NE(std::string(e.what()).find("CUDA"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(pb.out.snapshot() == out_before);
  EXPECT_TRUE(pb.final_state.snapshot() == state_before);
}

TEST(Validation, ReferenceRefusesCudaTensors) {
  Problem pb = base_problem(false);
  try {
    flash_kda::reference_fwd(all_on_cuda(pb));
    ADD_FAILURE() << "no error thrown";
  } catch (const flash_kda::Error& e) {
    EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(ErrorKind::kValue));
    EXPECT_EQ(e.argument(), "q");
  }
  EXPECT_EQ(pb.out.count_nan(), pb.out.numel());
}

TEST(Validation, ReferenceAcceptsWideOutputsButFwdDoesNot) {
  Problem pb = base_problem(false);
  HostTensor out64(DType::kFloat64, pb.out.shape()), state64(DType::kFloat64, pb.final_state.shape());
  HostTensor init64 = pb.initial_state.converted(DType::kFloat64);
  FwdParams p = pb.params();
  p.out = out64.ref();
  p.initial_state = init64.ref();
  p.final_state = state64.ref();
  EXPECT_NO_THROW(flash_kda::reference_fwd(p));
  EXPECT_THROW(flash_kda::fwd(p, nullptr, 0), flash_kda::Error);
}

}  // namespace
}  // namespace kda_test
