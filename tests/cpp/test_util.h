// Shared helpers of the C++ test suites: host buffers for one KDA problem,
// random inputs, NaN poison, error metrics and the float64 oracle call.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cpu/bf16.h"
#include "flash_kda/flash_kda.h"

namespace kda_test {

using flash_kda::DType;
using flash_kda::FwdParams;
using flash_kda::TensorRef;

constexpr int64_t kDim = flash_kda::kHeadDim;  // K == V

// ---------------------------------------------------------------------------
// An owned, 64-byte aligned, contiguous host buffer with a TensorRef view.
// A default-constructed HostTensor is "not given" (None). Move-only, so that
// the data pointer (and its alignment) never changes.
class HostTensor {
 public:
  HostTensor() = default;
  HostTensor(DType dtype, std::vector<int64_t> shape) : dtype_(dtype), shape_(std::move(shape)) {
    storage_.assign(bytes() + 64, 0);
    offset_ = (64 - reinterpret_cast<uintptr_t>(storage_.data()) % 64) % 64;
  }
  HostTensor(HostTensor&&) = default;
  HostTensor& operator=(HostTensor&&) = default;
  HostTensor(const HostTensor&) = delete;
  HostTensor& operator=(const HostTensor&) = delete;

  bool present() const { return !storage_.empty(); }
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape_) n *= d;
    return n;
  }
  size_t bytes() const { return static_cast<size_t>(numel()) * flash_kda::dtype_size(dtype_); }
  unsigned char* data() { return storage_.data() + offset_; }
  const unsigned char* data() const { return storage_.data() + offset_; }

  // The view handed to the library; "None" when not present.
  TensorRef ref() const {
    TensorRef t;
    if (!present()) return t;
    t.data = const_cast<unsigned char*>(data());
    t.dtype = dtype_;
    t.ndim = static_cast<int>(shape_.size());
    int64_t stride = 1;
    for (int i = t.ndim - 1; i >= 0; --i) {
      t.shape[i] = shape_[i];
      t.strides[i] = stride;
      stride *= shape_[i];
    }
    return t;
  }

  double get(int64_t i) const { return flash_kda::cpu::load_element(ref(), i); }
  void set(int64_t i, double x) { flash_kda::cpu::store_element(ref(), i, x); }

  // All bytes 0xFF: NaN in bf16, fp32 and fp64 alike.
  void poison() {
    if (present()) std::memset(data(), 0xFF, bytes());
  }
  int64_t count_nan() const {
    int64_t n = 0;
    for (int64_t i = 0; i < numel(); ++i) n += std::isnan(get(i)) ? 1 : 0;
    return n;
  }
  std::vector<unsigned char> snapshot() const {
    return present() ? std::vector<unsigned char>(data(), data() + bytes()) : std::vector<unsigned char>();
  }
  // A copy with every element converted (exactly, when widening) to `dtype`.
  HostTensor converted(DType dtype) const {
    HostTensor c(dtype, shape_);
    for (int64_t i = 0; i < numel(); ++i) c.set(i, get(i));
    return c;
  }

 private:
  DType dtype_ = DType::kOther;
  std::vector<int64_t> shape_;
  std::vector<unsigned char> storage_;
  size_t offset_ = 0;
};

inline const char* short_dtype(DType d) {
  switch (d) {
    case DType::kBFloat16: return "bf16";
    case DType::kFloat32: return "fp32";
    case DType::kFloat64: return "fp64";
    case DType::kFloat16: return "fp16";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kOther: return "none";
    default: return "other";
  }
}

// ---------------------------------------------------------------------------
// Seeds: fresh per test case (derived from the test's full name, so a case
// sees the same inputs in every run and in every process) and fresh per call
// (a counter), so two problems of one case differ.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

inline uint64_t fresh_seed() {
  static uint64_t counter = 0;
  uint64_t h = 0xCBF29CE484222325ull;  // FNV-1a of the current test's name
  if (const auto* info = ::testing::UnitTest::GetInstance()->current_test_info()) {
    for (const char* s : {info->test_suite_name(), ".", info->name()})
      for (; *s; ++s) h = (h ^ static_cast<unsigned char>(*s)) * 0x100000001B3ull;
  }
  return splitmix64(h ^ splitmix64(++counter));
}

// ---------------------------------------------------------------------------
// Distributions of the gate logits g and of dt_bias (the gate is
// lower_bound * sigmoid(exp(A_log) * (g + dt_bias))).
enum class GateDist { kMinus8, kZero, kPlus8, kUniform8, kNormal8,       // N(0, 8^2)
                      kMinus20, kPlus20,                                  // constant logits
                      kLogDecayMix };  // precomputed log decays -exp(U(-6, 9.2)): -2.5e-3 .. -1e4
enum class BiasDist { kZero, kPlus4, kMinus4, kPlus8, kMinus8, kUniform8 };
inline constexpr GateDist kAllGates[] = {GateDist::kMinus8, GateDist::kZero, GateDist::kPlus8,
                                         GateDist::kUniform8, GateDist::kNormal8};
inline constexpr BiasDist kAllBiases[] = {BiasDist::kZero,   BiasDist::kPlus4,  BiasDist::kMinus4,
                                          BiasDist::kPlus8,  BiasDist::kMinus8, BiasDist::kUniform8};

inline const char* name(GateDist g) {
  switch (g) {
    case GateDist::kMinus8: return "gm8";
    case GateDist::kZero: return "g0";
    case GateDist::kPlus8: return "gp8";
    case GateDist::kUniform8: return "gU8";
    case GateDist::kMinus20: return "gm20";
    case GateDist::kPlus20: return "gp20";
    case GateDist::kLogDecayMix: return "gLogMix";
    default: return "gN8";
  }
}
inline const char* name(BiasDist b) {
  switch (b) {
    case BiasDist::kZero: return "dt0";
    case BiasDist::kPlus4: return "dtp4";
    case BiasDist::kMinus4: return "dtm4";
    case BiasDist::kPlus8: return "dtp8";
    case BiasDist::kMinus8: return "dtm8";
    default: return "dtU8";
  }
}

// What to build. Without seqlens: B rows of T tokens. With seqlens: B = 1,
// T = sum(seqlens), cu_seqlens = their prefix sums (zeros allowed).
struct ProblemSpec {
  int64_t B = 2, T = 16, H = 2;
  std::vector<int64_t> seqlens;
  DType initial = DType::kOther;  // kOther: not given
  DType final_ = DType::kOther;
  GateDist gate = GateDist::kUniform8;
  BiasDist bias = BiasDist::kZero;
  double lower_bound = -5.0;
  double scale = 1.0 / std::sqrt(static_cast<double>(kDim));
  flash_kda::GateMode gate_mode = flash_kda::GateMode::kLowerBound;
  double a_log = NAN;            // NaN: A_log ~ U(-1, 1) per head; else this value
  bool with_dt_bias = true;      // softplus mode may leave dt_bias out
  DType g_dtype = DType::kBFloat16;  // fp32 allowed for precomputed gates
};

// All buffers of one `fwd` call. Inputs random (see fill_random), outputs
// poisoned. q, k, v, g, beta are bf16; A_log, dt_bias fp32; out bf16.
struct Problem {
  ProblemSpec spec;
  int64_t B = 0, T = 0, H = 0, N = 0;
  uint64_t seed = 0;
  HostTensor q, k, v, g, beta, out, A_log, dt_bias, initial_state, final_state, cu_seqlens;

  explicit Problem(ProblemSpec s, uint64_t seed_ = fresh_seed()) : spec(std::move(s)), seed(seed_) {
    H = spec.H;
    if (spec.seqlens.empty()) {
      B = spec.B;
      T = spec.T;
      N = B;
    } else {
      B = 1;
      T = 0;
      for (int64_t l : spec.seqlens) T += l;
      N = static_cast<int64_t>(spec.seqlens.size());
      cu_seqlens = HostTensor(DType::kInt64, {N + 1});
      auto* cu = reinterpret_cast<int64_t*>(cu_seqlens.data());
      cu[0] = 0;
      for (int64_t i = 0; i < N; ++i) cu[i + 1] = cu[i] + spec.seqlens[i];
    }
    q = HostTensor(DType::kBFloat16, {B, T, H, kDim});
    k = HostTensor(DType::kBFloat16, {B, T, H, kDim});
    v = HostTensor(DType::kBFloat16, {B, T, H, kDim});
    g = HostTensor(spec.g_dtype, {B, T, H, kDim});
    beta = HostTensor(DType::kBFloat16, {B, T, H});
    out = HostTensor(DType::kBFloat16, {B, T, H, kDim});
    const bool precomputed = spec.gate_mode == flash_kda::GateMode::kPrecomputed;
    if (!precomputed) A_log = HostTensor(DType::kFloat32, {H});
    if (!precomputed && spec.with_dt_bias) dt_bias = HostTensor(DType::kFloat32, {H, kDim});
    if (spec.initial != DType::kOther) initial_state = HostTensor(spec.initial, {N, H, kDim, kDim});
    if (spec.final_ != DType::kOther) final_state = HostTensor(spec.final_, {N, H, kDim, kDim});
    fill_random();
    poison_outputs();
  }

  // q, k, v, beta ~ N(0, 1); A_log ~ U(-1, 1); g and dt_bias per spec;
  // initial state ~ N(0, 1) (rounded to its dtype).
  void fill_random() {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_real_distribution<double> uniform(-1.0, 1.0);
    auto fill = [&](HostTensor& t, const std::function<double()>& draw) {
      if (!t.present()) return;
      for (int64_t i = 0; i < t.numel(); ++i) t.set(i, draw());
    };
    auto standard = [&] { return normal(rng); };
    fill(q, standard);
    fill(k, standard);
    fill(v, standard);
    fill(beta, standard);
    fill(A_log, [&] { return std::isnan(spec.a_log) ? uniform(rng) : spec.a_log; });
    fill(g, [&] {
      switch (spec.gate) {
        case GateDist::kMinus8: return -8.0;
        case GateDist::kZero: return 0.0;
        case GateDist::kPlus8: return 8.0;
        case GateDist::kUniform8: return 8.0 * uniform(rng);
        case GateDist::kMinus20: return -20.0;
        case GateDist::kPlus20: return 20.0;
        case GateDist::kLogDecayMix: return -std::exp(-6.0 + 15.2 * (0.5 + 0.5 * uniform(rng)));
        default: return 8.0 * normal(rng);
      }
    });
    fill(dt_bias, [&] {
      switch (spec.bias) {
        case BiasDist::kZero: return 0.0;
        case BiasDist::kPlus4: return 4.0;
        case BiasDist::kMinus4: return -4.0;
        case BiasDist::kPlus8: return 8.0;
        case BiasDist::kMinus8: return -8.0;
        default: return 8.0 * uniform(rng);
      }
    });
    if (initial_state.present()) fill(initial_state, standard);
  }

  void poison_outputs() {
    out.poison();
    final_state.poison();
  }

  // The `fwd` arguments over these buffers.
  FwdParams params() const {
    FwdParams p;
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
    p.gate_mode = spec.gate_mode;
    p.initial_state = initial_state.ref();
    p.final_state = final_state.ref();
    p.cu_seqlens = cu_seqlens.ref();
    return p;
  }

  std::string describe() const {
    std::string s = "B=" + std::to_string(B) + " T=" + std::to_string(T) + " H=" + std::to_string(H);
    if (!spec.seqlens.empty()) {
      s += " seqlens={";
      for (size_t i = 0; i < spec.seqlens.size(); ++i) s += (i ? "," : "") + std::to_string(spec.seqlens[i]);
      s += "}";
    }
    s += std::string(" gate=") + flash_kda::gate_mode_name(spec.gate_mode) + " g=" + short_dtype(spec.g_dtype) +
         " A_log=" + (std::isnan(spec.a_log) ? std::string("U(-1,1)") : std::to_string(spec.a_log)) +
         (spec.with_dt_bias ? "" : " no-dt_bias");
    s += std::string(" ") + name(spec.gate) + " " + name(spec.bias) +
         " lower_bound=" + std::to_string(spec.lower_bound) + " initial=" + short_dtype(spec.initial) +
         " final=" + short_dtype(spec.final_) + " seed=" + std::to_string(seed);
    return s;
  }
};

// The float64 oracle on a problem: fp64 out and fp64 final state, fed the
// same initial-state values the problem holds (converted exactly to fp64,
// since the oracle, like fwd, wants both states of one dtype).
// Extra buffers a validation test's mutation needs (a tensor of another
// dtype, an arena); poisoned, kept alive for the call and checked for writes
// like the rest.
struct Scratch {
  std::deque<HostTensor> buffers;  // deque: elements never move
  HostTensor& make(DType dtype, std::vector<int64_t> shape) {
    buffers.emplace_back(dtype, std::move(shape));
    buffers.back().poison();
    return buffers.back();
  }
};

// What every refused call's error must show: its kind, the argument it
// names, a message starting with "argument: " and containing each fragment.
inline void expect_error_message(const flash_kda::Error& e, flash_kda::ErrorKind kind, const std::string& argument,
                                 const std::vector<std::string>& fragments) {
  const std::string msg = e.what();
  SCOPED_TRACE("message: " + msg);
  EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(kind));
  EXPECT_EQ(e.argument(), argument);
  EXPECT_EQ(msg.rfind(argument + ": ", 0), 0u) << "message does not start with the argument name";
  for (const std::string& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "missing: " << f;
}

// Same data, other shape (row-major strides).
inline void reshape(TensorRef& t, std::vector<int64_t> shape) {
  t.ndim = static_cast<int>(shape.size());
  int64_t stride = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    t.shape[i] = shape[i];
    t.strides[i] = stride;
    stride *= shape[i];
  }
}

struct ReferenceResult {
  HostTensor out, final_state;
};
inline ReferenceResult run_reference(const Problem& pb) {
  ReferenceResult r;
  r.out = HostTensor(DType::kFloat64, pb.out.shape());
  r.final_state = HostTensor(DType::kFloat64, {pb.N, pb.H, kDim, kDim});
  r.out.poison();
  r.final_state.poison();
  HostTensor initial64;
  if (pb.initial_state.present()) initial64 = pb.initial_state.converted(DType::kFloat64);
  FwdParams p = pb.params();
  p.out = r.out.ref();
  p.initial_state = initial64.ref();
  p.final_state = r.final_state.ref();
  flash_kda::reference_fwd(p);
  return r;
}

// ||got - want||_2 / ||want||_2 (plain ||got - want|| when want is 0).
inline double rel_l2(const HostTensor& got, const HostTensor& want) {
  EXPECT_EQ(got.numel(), want.numel());
  double num = 0, den = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double d = got.get(i) - want.get(i);
    num += d * d;
    den += want.get(i) * want.get(i);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

inline bool bit_equal(const HostTensor& a, const HostTensor& b) {
  return a.bytes() == b.bytes() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

}  // namespace kda_test
