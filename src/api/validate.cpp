#include "api/validate.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>
#include <vector>

#include "cpu/bf16.h"

namespace flash_kda::detail {
namespace {

std::string shape_string(const TensorRef& t) {
  std::ostringstream s;
  s << "[";
  for (int i = 0; i < t.ndim; ++i) s << (i ? ", " : "") << t.shape[i];
  s << "]";
  return s.str();
}

std::string shape_string(std::initializer_list<int64_t> dims) {
  std::ostringstream s;
  s << "[";
  int i = 0;
  for (int64_t d : dims) s << (i++ ? ", " : "") << d;
  s << "]";
  return s.str();
}

std::string number_string(double x) {
  std::ostringstream s;
  s << std::setprecision(17) << x;
  return s.str();
}

const char* device_name(DeviceType d) { return d == DeviceType::kCUDA ? "cuda" : "cpu"; }

void require_present(const TensorRef& t, const char* name) {
  if (!t.present()) fail(ErrorKind::kValue, name, std::string(name) + ": required tensor is missing (got None)");
  if (t.ndim > TensorRef::kMaxDims)
    fail(ErrorKind::kValue, name, std::string(name) + ": rank " + std::to_string(t.ndim) + " is not supported");
}

void require_dtype(const TensorRef& t, const char* name, std::initializer_list<DType> allowed) {
  for (DType d : allowed)
    if (t.dtype == d) return;
  std::string want;
  int i = 0;
  for (DType d : allowed) want += std::string(i++ ? " or " : "") + dtype_name(d);
  fail(ErrorKind::kType, name,
       std::string(name) + ": expected dtype " + want + ", got " + dtype_name(t.dtype));
}

void require_rank(const TensorRef& t, const char* name, int rank) {
  if (t.ndim != rank)
    fail(ErrorKind::kValue, name,
         std::string(name) + ": expected a " + std::to_string(rank) + "-D tensor, got " +
             std::to_string(t.ndim) + "-D with shape " + shape_string(t));
}

void require_shape(const TensorRef& t, const char* name, std::initializer_list<int64_t> dims,
                   const char* what) {
  int i = 0;
  bool ok = static_cast<int>(dims.size()) == t.ndim;
  for (int64_t d : dims) {
    if (!ok) break;
    ok = t.shape[i++] == d;
  }
  if (!ok)
    fail(ErrorKind::kValue, name,
         std::string(name) + ": expected shape " + shape_string(dims) + " (" + what + "), got " +
             shape_string(t));
}

void require_pointer(const TensorRef& t, const char* name, size_t alignment);

void require_layout(const TensorRef& t, const char* name, size_t alignment) {
  for (int i = 0; i < t.ndim; ++i)
    if (t.shape[i] < 0)
      fail(ErrorKind::kValue, name, std::string(name) + ": negative size in shape " + shape_string(t));
  if (!t.is_contiguous())
    fail(ErrorKind::kValue, name,
         std::string(name) + ": expected a contiguous (row-major) tensor, got strides that are not; "
                             "call .contiguous() first");
  require_pointer(t, name, alignment);
}

void require_pointer(const TensorRef& t, const char* name, size_t alignment) {
  if (t.numel() > 0 && t.data == nullptr)
    fail(ErrorKind::kValue, name, std::string(name) + ": data pointer is null");
  if (t.numel() > 0 && reinterpret_cast<uintptr_t>(t.data) % alignment != 0)
    fail(ErrorKind::kValue, name,
         std::string(name) + ": data pointer must be " + std::to_string(alignment) +
             "-byte aligned, got address ending in 0x" +
             [&] {
               std::ostringstream s;
               s << std::hex << (reinterpret_cast<uintptr_t>(t.data) & 0xff);
               return s.str();
             }());
}

// Like require_layout, for tensors read element by element through their
// strides (beta): any non-negative strides.
void require_strided_layout(const TensorRef& t, const char* name, size_t alignment) {
  for (int i = 0; i < t.ndim; ++i) {
    if (t.shape[i] < 0)
      fail(ErrorKind::kValue, name, std::string(name) + ": negative size in shape " + shape_string(t));
    if (t.shape[i] > 1 && t.strides[i] < 0)
      fail(ErrorKind::kValue, name,
           std::string(name) + ": expected non-negative strides, got stride " +
               std::to_string(t.strides[i]) + " in dimension " + std::to_string(i));
  }
  require_pointer(t, name, alignment);
}

// Elements from the first to one past the last addressed by `t`.
int64_t span_elements(const TensorRef& t) {
  if (t.numel() == 0) return 0;
  int64_t last = 0;
  for (int i = 0; i < t.ndim; ++i)
    if (t.shape[i] > 1) last += (t.shape[i] - 1) * t.strides[i];
  return last + 1;
}

// A 1-D index tensor of N entries (or N + 1 for offsets).
void require_index_tensor(const TensorRef& t, const char* name, int64_t count, const char* what) {
  require_dtype(t, name, {DType::kInt32, DType::kInt64});
  require_rank(t, name, 1);
  require_shape(t, name, {count}, what);
  require_layout(t, name, dtype_size(t.dtype));
}

struct NamedRef {
  const TensorRef* ref;
  const char* name;
};

// Presence, dtype and rank of the token tensors of fwd and decode: q, k, v,
// g (bf16; also fp32 when g_may_be_fp32), beta (rank 3) and out.
template <class Params>
void require_token_tensors(const Params& p, const ValidatePolicy& policy, bool g_may_be_fp32) {
  const NamedRef activations[] = {{&p.q, "q"}, {&p.k, "k"}, {&p.v, "v"}, {&p.g, "g"}};
  for (auto [t, name] : activations) {
    require_present(*t, name);
    if (t == &p.g && g_may_be_fp32)
      require_dtype(*t, name, {DType::kBFloat16, DType::kFloat32});
    else
      require_dtype(*t, name, {DType::kBFloat16});
    require_rank(*t, name, 4);
  }
  require_present(p.beta, "beta");
  require_dtype(p.beta, "beta", {DType::kBFloat16});
  require_rank(p.beta, "beta", 3);
  require_present(p.out, "out");
  if (policy.allow_wide_outputs)
    require_dtype(p.out, "out", {DType::kBFloat16, DType::kFloat32, DType::kFloat64});
  else
    require_dtype(p.out, "out", {DType::kBFloat16});
  require_rank(p.out, "out", 4);
}

// Contiguity and alignment of q, k, v, g and out (16 bytes: the kernels
// read and write them in 16-byte vectors and TMA boxes).
template <class Params>
void require_token_layouts(const Params& p, const ValidatePolicy& policy) {
  const size_t alignment = policy.allow_wide_outputs ? 1 : 16;
  const NamedRef tiles[] = {{&p.q, "q"}, {&p.k, "k"}, {&p.v, "v"}, {&p.g, "g"}, {&p.out, "out"}};
  for (auto [t, name] : tiles) require_layout(*t, name, alignment);
}

bool overlaps(const TensorRef& a, const TensorRef& b) {
  if (!a.present() || !b.present() || a.numel() == 0 || b.numel() == 0) return false;
  if (a.device != b.device || a.device_id != b.device_id) return false;
  auto lo_a = reinterpret_cast<uintptr_t>(a.data);
  auto lo_b = reinterpret_cast<uintptr_t>(b.data);
  auto hi_a = lo_a + static_cast<uintptr_t>(span_elements(a)) * dtype_size(a.dtype);
  auto hi_b = lo_b + static_cast<uintptr_t>(span_elements(b)) * dtype_size(b.dtype);
  return lo_a < hi_b && lo_b < hi_a;
}

}  // namespace

void fail(ErrorKind kind, const std::string& argument, const std::string& message) {
  throw Error(kind, argument, message);
}

// Head sizes K = V = 128 and the shapes of k, g, v, beta, out against q
// ([b, t, H, *], with the dimension names of the caller's contract).
void require_token_shapes(const TensorRef& q, const TensorRef& k, const TensorRef& v, const TensorRef& g,
                          const TensorRef& beta, const TensorRef& out, const char* b, const char* t) {
  const int64_t B = q.shape[0], T = q.shape[1], H = q.shape[2], K = q.shape[3];
  const int64_t V = v.shape[3];
  if (K != kHeadDim)
    fail(ErrorKind::kValue, "q",
         "q: head size K = " + std::to_string(K) + " is not supported; expected K = " +
             std::to_string(kHeadDim) + " (shape " + shape_string(q) + ")");
  if (V != kHeadDim)
    fail(ErrorKind::kValue, "v",
         "v: head size V = " + std::to_string(V) + " is not supported; expected V = " +
             std::to_string(kHeadDim) + " (shape " + shape_string(v) + ")");
  const std::string bt = std::string(b) + ", " + t + ", H";
  require_shape(k, "k", {B, T, H, K}, "same as q");
  require_shape(g, "g", {B, T, H, K}, "same as q");
  require_shape(v, "v", {B, T, H, V}, ("[" + bt + ", V] with " + bt + " of q").c_str());
  require_shape(beta, "beta", {B, T, H}, ("[" + bt + "] of q").c_str());
  require_shape(out, "out", {B, T, H, V}, "same as v");
}

void validate_cu_seqlens_contents(const TensorRef& cu_seqlens, int64_t total_tokens) {
  const int64_t count = cu_seqlens.shape[0];
  if (count < 2) return;  // rank/size errors are reported by validate()
  auto cu = [&](int64_t i) { return cpu::load_index(cu_seqlens, i); };
  if (cu(0) != 0)
    fail(ErrorKind::kValue, "cu_seqlens",
         "cu_seqlens: expected cu_seqlens[0] == 0, got " + std::to_string(cu(0)));
  for (int64_t i = 1; i < count; ++i)
    if (cu(i) < cu(i - 1))
      fail(ErrorKind::kValue, "cu_seqlens",
           "cu_seqlens: expected non-decreasing offsets, got cu_seqlens[" + std::to_string(i) +
               "] = " + std::to_string(cu(i)) + " < cu_seqlens[" + std::to_string(i - 1) +
               "] = " + std::to_string(cu(i - 1)));
  if (cu(count - 1) != total_tokens)
    fail(ErrorKind::kValue, "cu_seqlens",
         "cu_seqlens: expected the last entry to equal the total number of tokens T = " +
             std::to_string(total_tokens) + ", got " + std::to_string(cu(count - 1)));
}

int64_t host_sequence_length(const FwdParams& p, const FwdShape& shape, int64_t n) {
  if (!shape.varlen) return shape.tokens;
  return cpu::load_index(p.cu_seqlens, n + 1) - cpu::load_index(p.cu_seqlens, n);
}

namespace {

// Non-negative entries of a host index tensor must be < bound and distinct.
// Returns them sorted.
std::vector<int64_t> check_slots(const TensorRef& t, const char* name, int64_t bound,
                                 const char* pool) {
  std::vector<std::pair<int64_t, int64_t>> used;  // (slot, n)
  for (int64_t n = 0; n < t.shape[0]; ++n) {
    const int64_t slot = cpu::load_index(t, n);
    if (slot < 0) continue;
    if (slot >= bound)
      fail(ErrorKind::kValue, name,
           std::string(name) + ": expected slots in [0, " + std::to_string(bound) + ") (" + pool +
               " has " + std::to_string(bound) + " slots) or negative (padding), got " + name + "[" +
               std::to_string(n) + "] = " + std::to_string(slot));
    used.emplace_back(slot, n);
  }
  std::sort(used.begin(), used.end());
  for (size_t i = 1; i < used.size(); ++i)
    if (used[i].first == used[i - 1].first)
      fail(ErrorKind::kValue, name,
           std::string(name) + ": expected distinct slots, got slot " + std::to_string(used[i].first) +
               " at " + name + "[" + std::to_string(used[i - 1].second) + "] and " + name + "[" +
               std::to_string(used[i].second) + "]");
  std::vector<int64_t> slots;
  for (auto& u : used) slots.push_back(u.first);
  return slots;
}

}  // namespace

void validate_serving_contents(const FwdParams& p, const FwdShape& shape) {
  const int64_t N = shape.num_sequences;
  if (p.state_indices.present()) {
    // state_indices bounds: the pool it reads and, without final_state_indices, the one it writes.
    int64_t bound = p.initial_state.present() ? p.initial_state.shape[0] : p.final_state.shape[0];
    const char* pool = p.initial_state.present() ? "initial_state" : "final_state";
    if (!p.final_state_indices.present() && p.final_state.present() && p.final_state.shape[0] < bound) {
      bound = p.final_state.shape[0];
      pool = "final_state";
    }
    const std::vector<int64_t> read = check_slots(p.state_indices, "state_indices", bound, pool);
    if (p.final_state_indices.present()) {
      check_slots(p.final_state_indices, "final_state_indices", p.final_state.shape[0], "final_state");
      // In place with separate slots: a slot one sequence writes must not be
      // one another sequence reads (the CTAs run concurrently).
      if (p.initial_state.present() && p.final_state.data == p.initial_state.data) {
        for (int64_t n = 0; n < N; ++n) {
          const int64_t w = cpu::load_index(p.final_state_indices, n);
          const int64_t r = cpu::load_index(p.state_indices, n);
          if (w < 0 || r < 0 || w == r) continue;
          if (std::binary_search(read.begin(), read.end(), w))
            fail(ErrorKind::kValue, "final_state_indices",
                 "final_state_indices: final_state_indices[" + std::to_string(n) + "] = " +
                     std::to_string(w) + " is a slot another sequence reads (state_indices); with "
                     "final_state the very same tensor as initial_state that is a race");
        }
      }
    }
  }
  if (p.checkpoint_offsets.present()) {
    const TensorRef& o = p.checkpoint_offsets;
    const int64_t rows = p.checkpoints.shape[0];
    if (cpu::load_index(o, 0) < 0)
      fail(ErrorKind::kValue, "checkpoint_offsets",
           "checkpoint_offsets: expected checkpoint_offsets[0] >= 0, got " +
               std::to_string(cpu::load_index(o, 0)));
    for (int64_t n = 0; n < N; ++n) {
      const int64_t want = host_sequence_length(p, shape, n) / p.checkpoint_interval;
      const int64_t got = cpu::load_index(o, n + 1) - cpu::load_index(o, n);
      if (got != want)
        fail(ErrorKind::kValue, "checkpoint_offsets",
             "checkpoint_offsets: sequence " + std::to_string(n) + " has " +
                 std::to_string(host_sequence_length(p, shape, n)) + " tokens, so expected " +
                 "checkpoint_offsets[" + std::to_string(n + 1) + "] - checkpoint_offsets[" +
                 std::to_string(n) + "] == floor(length / checkpoint_interval) = " +
                 std::to_string(want) + ", got " + std::to_string(got));
    }
    if (cpu::load_index(o, N) > rows)
      fail(ErrorKind::kValue, "checkpoint_offsets",
           "checkpoint_offsets: expected checkpoint_offsets[N] <= checkpoints.shape[0] = " +
               std::to_string(rows) + ", got " + std::to_string(cpu::load_index(o, N)));
  }
}

namespace {

// Shapes, dtypes and combinations of the serving arguments (state pools,
// checkpoints); their contents are checked by validate_serving_contents.
void validate_serving_arguments(const FwdParams& p, int64_t N, int64_t H, const ValidatePolicy& policy) {
  if (p.state_indices.present()) {
    require_index_tensor(p.state_indices, "state_indices", N, "[N], one slot per sequence");
    if (!p.initial_state.present() && !p.final_state.present())
      fail(ErrorKind::kValue, "state_indices",
           "state_indices: given without initial_state or final_state (there is no pool to index)");
  }
  if (p.final_state_indices.present()) {
    if (!p.state_indices.present())
      fail(ErrorKind::kValue, "final_state_indices",
           "final_state_indices: requires state_indices (it only redirects the pool's writes)");
    if (!p.final_state.present())
      fail(ErrorKind::kValue, "final_state_indices",
           "final_state_indices: given without final_state (there is no pool to write)");
    require_index_tensor(p.final_state_indices, "final_state_indices", N, "[N], one slot per sequence");
  }
  if (p.zero_start.present()) {
    require_dtype(p.zero_start, "zero_start", {DType::kBool, DType::kUInt8});
    require_rank(p.zero_start, "zero_start", 1);
    require_shape(p.zero_start, "zero_start", {N}, "[N], one flag per sequence");
    require_layout(p.zero_start, "zero_start", 1);
  }
  const bool any_checkpoint =
      p.checkpoints.present() || p.checkpoint_offsets.present() || p.checkpoint_interval != 0;
  if (!any_checkpoint) return;
  if (p.checkpoint_interval <= 0 || p.checkpoint_interval % kCheckpointGranule != 0)
    fail(ErrorKind::kValue, "checkpoint_interval",
         "checkpoint_interval: expected a positive multiple of " + std::to_string(kCheckpointGranule) +
             " (with checkpoints), got " + std::to_string(p.checkpoint_interval));
  if (!p.checkpoints.present())
    fail(ErrorKind::kValue, "checkpoints",
         "checkpoints: required tensor is missing (got None) while checkpoint_interval or "
         "checkpoint_offsets is given");
  if (!p.checkpoint_offsets.present())
    fail(ErrorKind::kValue, "checkpoint_offsets",
         "checkpoint_offsets: required tensor is missing (got None) while checkpoints is given");
  if (policy.allow_wide_outputs)
    require_dtype(p.checkpoints, "checkpoints", {DType::kBFloat16, DType::kFloat32, DType::kFloat64});
  else
    require_dtype(p.checkpoints, "checkpoints", {DType::kBFloat16, DType::kFloat32});
  require_rank(p.checkpoints, "checkpoints", 4);
  require_shape(p.checkpoints, "checkpoints", {p.checkpoints.shape[0], H, kHeadDim, kHeadDim},
                "[num_checkpoints, H, V, K]");
  require_layout(p.checkpoints, "checkpoints", policy.allow_wide_outputs ? 1 : 16);
  require_index_tensor(p.checkpoint_offsets, "checkpoint_offsets", N + 1, "[N + 1], like cu_seqlens");
}

}  // namespace

FwdShape validate(const FwdParams& p, const ValidatePolicy& policy) {
  // Presence, dtype and rank, argument by argument, in signature order.
  const GateMode mode = p.gate_mode;
  if (mode != GateMode::kLowerBound && mode != GateMode::kSoftplus && mode != GateMode::kPrecomputed)
    fail(ErrorKind::kValue, "gate_mode",
         "gate_mode: expected lower_bound, softplus or precomputed, got " +
             std::to_string(static_cast<int>(mode)));
  require_token_tensors(p, policy, mode == GateMode::kPrecomputed);
  if (mode == GateMode::kPrecomputed) {
    // The gate is g itself: a decay rate or bias given as well would be ignored.
    const NamedRef unused[] = {{&p.A_log, "A_log"}, {&p.dt_bias, "dt_bias"}};
    for (auto [t, name] : unused)
      if (t->present())
        fail(ErrorKind::kValue, name,
             std::string(name) + ": must be None with a precomputed gate (g is the log decay itself)");
  } else {
    require_present(p.A_log, "A_log");
    require_dtype(p.A_log, "A_log", {DType::kFloat32});
    require_rank(p.A_log, "A_log", 1);
    if (mode == GateMode::kLowerBound || p.dt_bias.present()) {  // optional for softplus
      require_present(p.dt_bias, "dt_bias");
      require_dtype(p.dt_bias, "dt_bias", {DType::kFloat32});
      require_rank(p.dt_bias, "dt_bias", 2);
    }
  }

  const int64_t B = p.q.shape[0], T = p.q.shape[1], H = p.q.shape[2], K = p.q.shape[3];
  const int64_t V = p.v.shape[3];
  require_token_shapes(p.q, p.k, p.v, p.g, p.beta, p.out, "B", "T");
  if (p.A_log.present()) require_shape(p.A_log, "A_log", {H}, "[H]");
  if (p.dt_bias.present()) require_shape(p.dt_bias, "dt_bias", {H, K}, "[H, K]");

  require_token_layouts(p, policy);
  require_strided_layout(p.beta, "beta", 2);  // read element by element: any strides
  if (p.A_log.present()) require_layout(p.A_log, "A_log", 4);
  if (p.dt_bias.present()) require_layout(p.dt_bias, "dt_bias", 4);

  FwdShape shape;
  shape.batch = B;
  shape.tokens = T;
  shape.heads = H;
  shape.num_sequences = B;

  if (p.cu_seqlens.present()) {
    require_dtype(p.cu_seqlens, "cu_seqlens", {DType::kInt64, DType::kInt32});
    require_rank(p.cu_seqlens, "cu_seqlens", 1);
    require_layout(p.cu_seqlens, "cu_seqlens", dtype_size(p.cu_seqlens.dtype));
    if (p.cu_seqlens.shape[0] < 2)
      fail(ErrorKind::kValue, "cu_seqlens",
           "cu_seqlens: expected at least 2 entries (N + 1 offsets), got " +
               std::to_string(p.cu_seqlens.shape[0]));
    if (B != 1)
      fail(ErrorKind::kValue, "q",
           "q: with cu_seqlens the batch size must be 1 (sequences are packed along T), got B = " +
               std::to_string(B));
    shape.varlen = true;
    shape.num_sequences = p.cu_seqlens.shape[0] - 1;
  }
  const int64_t N = shape.num_sequences;

  validate_serving_arguments(p, N, H, policy);
  const NamedRef states[] = {{&p.initial_state, "initial_state"}, {&p.final_state, "final_state"}};
  for (auto [t, name] : states) {
    if (!t->present()) continue;
    if (policy.allow_wide_outputs)
      require_dtype(*t, name, {DType::kBFloat16, DType::kFloat32, DType::kFloat64});
    else
      require_dtype(*t, name, {DType::kBFloat16, DType::kFloat32});
    require_rank(*t, name, 4);
    // With state_indices the states are pools [P, H, V, K] of any P.
    if (p.state_indices.present())
      require_shape(*t, name, {t->shape[0], H, V, K}, "a pool [P, H, V, K] indexed by state_indices");
    else
      require_shape(*t, name, {N, H, V, K}, "[N, H, V, K]");
    require_layout(*t, name, policy.allow_wide_outputs ? 1 : 16);
  }
  if (p.initial_state.present() && p.final_state.present() &&
      p.initial_state.dtype != p.final_state.dtype)
    fail(ErrorKind::kType, "final_state",
         std::string("final_state: expected the same dtype as initial_state (") +
             dtype_name(p.initial_state.dtype) + "), got " + dtype_name(p.final_state.dtype));

  // All tensors on one device.
  const NamedRef all[] = {{&p.q, "q"},          {&p.k, "k"},
                          {&p.v, "v"},          {&p.g, "g"},
                          {&p.beta, "beta"},    {&p.out, "out"},
                          {&p.A_log, "A_log"},  {&p.dt_bias, "dt_bias"},
                          {&p.initial_state, "initial_state"},
                          {&p.final_state, "final_state"},
                          {&p.cu_seqlens, "cu_seqlens"},
                          {&p.state_indices, "state_indices"},
                          {&p.final_state_indices, "final_state_indices"},
                          {&p.zero_start, "zero_start"},
                          {&p.checkpoints, "checkpoints"},
                          {&p.checkpoint_offsets, "checkpoint_offsets"}};
  for (auto [t, name] : all) {
    if (!t->present()) continue;
    if (t->device != p.q.device || t->device_id != p.q.device_id)
      fail(ErrorKind::kValue, name,
           std::string(name) + ": expected a tensor on the same device as q (" +
               device_name(p.q.device) + ":" + std::to_string(p.q.device_id) + "), got " +
               device_name(t->device) + ":" + std::to_string(t->device_id));
  }

  if (!std::isfinite(p.scale))
    fail(ErrorKind::kValue, "scale", "scale: expected a finite number, got " + number_string(p.scale));
  if (mode == GateMode::kLowerBound &&
      !(p.lower_bound >= kMinLowerBound && p.lower_bound <= kMaxLowerBound))
    fail(ErrorKind::kValue, "lower_bound",
         "lower_bound: expected a value in [-5, 0], got " + number_string(p.lower_bound));

  // Outputs must not overlap inputs or each other. final_state may be the
  // very same tensor as initial_state (updated in place).
  const NamedRef inputs[] = {{&p.q, "q"},         {&p.k, "k"},        {&p.v, "v"},
                             {&p.g, "g"},         {&p.beta, "beta"},  {&p.A_log, "A_log"},
                             {&p.dt_bias, "dt_bias"}, {&p.initial_state, "initial_state"},
                             {&p.cu_seqlens, "cu_seqlens"}, {&p.state_indices, "state_indices"},
                             {&p.final_state_indices, "final_state_indices"},
                             {&p.zero_start, "zero_start"},
                             {&p.checkpoint_offsets, "checkpoint_offsets"}};
  for (auto [t, name] : inputs)
    if (overlaps(p.out, *t))
      fail(ErrorKind::kValue, "out", std::string("out: must not overlap input ") + name);
  if (overlaps(p.out, p.final_state))
    fail(ErrorKind::kValue, "out", "out: must not overlap final_state");
  for (auto [t, name] : inputs)
    if (overlaps(p.checkpoints, *t))
      fail(ErrorKind::kValue, "checkpoints", std::string("checkpoints: must not overlap input ") + name);
  if (overlaps(p.checkpoints, p.out) || overlaps(p.checkpoints, p.final_state))
    fail(ErrorKind::kValue, "checkpoints",
         std::string("checkpoints: must not overlap ") + (overlaps(p.checkpoints, p.out) ? "out" : "final_state"));
  for (auto [t, name] : inputs) {
    if (!overlaps(p.final_state, *t)) continue;
    const bool same_state = t == &p.initial_state && p.final_state.data == p.initial_state.data &&
                            p.final_state.shape[0] == p.initial_state.shape[0];
    if (!same_state)
      fail(ErrorKind::kValue, "final_state",
           std::string("final_state: must not overlap input ") + name +
               (t == &p.initial_state ? " (it may only be the very same tensor)" : ""));
  }

  if (p.q.device == DeviceType::kCPU) {  // host tensors: check contents too (CUDA: on the device)
    if (p.cu_seqlens.present()) validate_cu_seqlens_contents(p.cu_seqlens, T);
    validate_serving_contents(p, shape);
  }
  return shape;
}

}  // namespace flash_kda::detail

// ---- decode ---------------------------------------------------------------------------
// Preconditions of `decode` (DecodeParams), worded like those of `fwd` above.
#include <algorithm>
#include <utility>

namespace flash_kda::detail {
namespace {

// Element i of a host int32/int64 tensor.
int64_t load_index(const TensorRef& t, int64_t i) {
  return t.dtype == DType::kInt32 ? static_cast<const int32_t*>(t.data)[i]
                                  : static_cast<const int64_t*>(t.data)[i];
}

void validate_decode_cu_seqlens_contents(const TensorRef& cu, int64_t total_tokens) {
  const int64_t count = cu.shape[0];
  if (load_index(cu, 0) != 0)
    fail(ErrorKind::kValue, "cu_seqlens",
         "cu_seqlens: expected cu_seqlens[0] == 0, got " + std::to_string(load_index(cu, 0)));
  for (int64_t i = 1; i < count; ++i) {
    const int64_t len = load_index(cu, i) - load_index(cu, i - 1);
    if (len < 1 || len > kMaxDecodeTokens)
      fail(ErrorKind::kValue, "cu_seqlens",
           "cu_seqlens: expected 1.." + std::to_string(kMaxDecodeTokens) +
               " tokens per sequence, got cu_seqlens[" + std::to_string(i) + "] - cu_seqlens[" +
               std::to_string(i - 1) + "] = " + std::to_string(len));
  }
  if (load_index(cu, count - 1) != total_tokens)
    fail(ErrorKind::kValue, "cu_seqlens",
         "cu_seqlens: expected the last entry to equal the number of packed tokens " +
             std::to_string(total_tokens) + " (q.shape[1]), got " +
             std::to_string(load_index(cu, count - 1)));
}

void validate_state_indices_contents(const TensorRef& idx, int64_t pool_size) {
  const int64_t n = idx.shape[0];
  std::vector<std::pair<int64_t, int64_t>> used;  // (slot, entry)
  used.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t slot = load_index(idx, i);
    if (slot >= pool_size)
      fail(ErrorKind::kValue, "state_indices",
           "state_indices: expected slots in [0, " + std::to_string(pool_size) +
               ") (the pool size P = state.shape[0]) or negative for padding, got state_indices[" +
               std::to_string(i) + "] = " + std::to_string(slot));
    if (slot >= 0) used.emplace_back(slot, i);
  }
  std::sort(used.begin(), used.end());
  for (size_t i = 1; i < used.size(); ++i)
    if (used[i].first == used[i - 1].first)
      fail(ErrorKind::kValue, "state_indices",
           "state_indices: expected distinct slots, got slot " + std::to_string(used[i].first) +
               " at entries " + std::to_string(used[i - 1].second) + " and " +
               std::to_string(used[i].second) + " (each sequence needs its own state)");
}

}  // namespace

DecodeShape validate_decode(const DecodeParams& p, const ValidatePolicy& policy) {
  require_token_tensors(p, policy, /*g_may_be_fp32=*/false);
  require_present(p.A_log, "A_log");
  require_dtype(p.A_log, "A_log", {DType::kFloat32});
  require_rank(p.A_log, "A_log", 1);
  require_present(p.dt_bias, "dt_bias");
  require_dtype(p.dt_bias, "dt_bias", {DType::kFloat32});
  require_rank(p.dt_bias, "dt_bias", 2);
  require_present(p.state, "state");
  if (policy.allow_wide_outputs)
    require_dtype(p.state, "state", {DType::kBFloat16, DType::kFloat32, DType::kFloat64});
  else
    require_dtype(p.state, "state", {DType::kBFloat16, DType::kFloat32});
  require_rank(p.state, "state", 4);
  require_present(p.state_indices, "state_indices");
  require_dtype(p.state_indices, "state_indices", {DType::kInt32, DType::kInt64});
  require_rank(p.state_indices, "state_indices", 1);
  if (p.cu_seqlens.present()) {
    require_dtype(p.cu_seqlens, "cu_seqlens", {DType::kInt32, DType::kInt64});
    require_rank(p.cu_seqlens, "cu_seqlens", 1);
  }

  const int64_t B = p.q.shape[0], T = p.q.shape[1], H = p.q.shape[2], K = p.q.shape[3];
  const int64_t V = p.v.shape[3];
  require_token_shapes(p.q, p.k, p.v, p.g, p.beta, p.out, "N", "t");
  require_shape(p.A_log, "A_log", {H}, "[H]");
  require_shape(p.dt_bias, "dt_bias", {H, K}, "[H, K]");

  DecodeShape shape;
  shape.heads = H;
  shape.total_tokens = B * T;
  if (p.cu_seqlens.present()) {
    if (p.cu_seqlens.shape[0] < 2)
      fail(ErrorKind::kValue, "cu_seqlens",
           "cu_seqlens: expected at least 2 entries (N + 1 offsets), got " +
               std::to_string(p.cu_seqlens.shape[0]));
    if (B != 1)
      fail(ErrorKind::kValue, "q",
           "q: with cu_seqlens the first dimension must be 1 (tokens packed along dim 1), got " +
               std::to_string(B) + " (shape " + shape_string(p.q) + ")");
    shape.varlen = true;
    shape.num_sequences = p.cu_seqlens.shape[0] - 1;
    const int64_t N = shape.num_sequences;
    if (T < N || T > N * kMaxDecodeTokens)
      fail(ErrorKind::kValue, "q",
           "q: expected between N = " + std::to_string(N) + " and " + std::to_string(kMaxDecodeTokens) +
               " * N = " + std::to_string(N * kMaxDecodeTokens) +
               " packed tokens (1.." + std::to_string(kMaxDecodeTokens) +
               " per sequence), got " + std::to_string(T) + " (shape " + shape_string(p.q) + ")");
  } else {
    if (T < 1 || T > kMaxDecodeTokens)
      fail(ErrorKind::kValue, "q",
           "q: expected 1.." + std::to_string(kMaxDecodeTokens) +
               " new tokens per sequence (dimension 1 of [N, t, H, K]), got t = " + std::to_string(T) +
               " (shape " + shape_string(p.q) + "); use fwd for prefill");
    shape.num_sequences = B;
    shape.tokens = T;
  }
  const int64_t N = shape.num_sequences;
  require_shape(p.state_indices, "state_indices", {N}, "[N]: one pool slot per sequence");
  const int64_t P = p.state.shape[0];
  require_shape(p.state, "state", {P, H, V, K}, "[P, H, V, K]: a pool of P states");
  shape.pool_size = P;

  require_token_layouts(p, policy);
  require_layout(p.beta, "beta", 2);
  require_layout(p.A_log, "A_log", 4);
  require_layout(p.dt_bias, "dt_bias", 4);
  require_layout(p.state, "state", policy.allow_wide_outputs ? 1 : 16);
  require_layout(p.state_indices, "state_indices", dtype_size(p.state_indices.dtype));
  if (p.cu_seqlens.present()) require_layout(p.cu_seqlens, "cu_seqlens", dtype_size(p.cu_seqlens.dtype));

  const NamedRef all[] = {{&p.q, "q"},          {&p.k, "k"},
                          {&p.v, "v"},          {&p.g, "g"},
                          {&p.beta, "beta"},    {&p.out, "out"},
                          {&p.A_log, "A_log"},  {&p.dt_bias, "dt_bias"},
                          {&p.state, "state"},  {&p.state_indices, "state_indices"},
                          {&p.cu_seqlens, "cu_seqlens"}};
  for (auto [t, name] : all) {
    if (!t->present()) continue;
    if (t->device != p.q.device || t->device_id != p.q.device_id)
      fail(ErrorKind::kValue, name,
           std::string(name) + ": expected a tensor on the same device as q (" +
               device_name(p.q.device) + ":" + std::to_string(p.q.device_id) + "), got " +
               device_name(t->device) + ":" + std::to_string(t->device_id));
  }

  if (!std::isfinite(p.scale))
    fail(ErrorKind::kValue, "scale", "scale: expected a finite number, got " + number_string(p.scale));
  if (!(p.lower_bound >= kMinLowerBound && p.lower_bound <= kMaxLowerBound))
    fail(ErrorKind::kValue, "lower_bound",
         "lower_bound: expected a value in [-5, 0], got " + number_string(p.lower_bound));

  // The written tensors (out, state) must not overlap the inputs or each other.
  const NamedRef inputs[] = {{&p.q, "q"},         {&p.k, "k"},        {&p.v, "v"},
                             {&p.g, "g"},         {&p.beta, "beta"},  {&p.A_log, "A_log"},
                             {&p.dt_bias, "dt_bias"}, {&p.state_indices, "state_indices"},
                             {&p.cu_seqlens, "cu_seqlens"}};
  for (auto [t, name] : inputs) {
    if (overlaps(p.out, *t))
      fail(ErrorKind::kValue, "out", std::string("out: must not overlap input ") + name);
    if (overlaps(p.state, *t))
      fail(ErrorKind::kValue, "state", std::string("state: must not overlap input ") + name);
  }
  if (overlaps(p.out, p.state)) fail(ErrorKind::kValue, "out", "out: must not overlap state");

  if (p.q.device == DeviceType::kCPU) {
    if (p.cu_seqlens.present()) validate_decode_cu_seqlens_contents(p.cu_seqlens, T);
    validate_state_indices_contents(p.state_indices, P);
  }
  return shape;
}

}  // namespace flash_kda::detail
