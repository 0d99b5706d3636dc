// The CUDA backend's host side: device checks, parameter packing, choice of
// kernel configuration, launches. No allocation and no host synchronisation.
#include "cuda/cuda_backend.h"

#include <cuda.h>
#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>

#include "api/validate.h"
#include "common/constants.h"
#include "cuda/sm90/fwd_launch.h"

namespace flash_kda::cuda {
namespace {

constexpr size_t kStatusBytes = 256;  // the status word, padded to an allocation-friendly size
// The varlen sequence records (sm90::SequenceRun) follow the check words at
// the next 16-byte boundary of the workspace (the forward reads each in one
// 16-byte load; the caller's workspace need not be 16-byte aligned, so its
// size includes the padding).
constexpr size_t kRunAlign = alignof(sm90::SequenceRun);
sm90::SequenceRun* runs_at(void* workspace, size_t offset) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(workspace) + offset;
  return reinterpret_cast<sm90::SequenceRun*>((a + kRunAlign - 1) / kRunAlign * kRunAlign);
}

[[noreturn]] void fail_cuda(cudaError_t err, const std::string& what) {
  detail::fail(ErrorKind::kRuntime, "", "flash_kda: " + what + " failed: " + cudaGetErrorString(err));
}

struct DeviceInfo {
  int major = -1, minor = -1, sm_count = 0;
};

const DeviceInfo& device_info(int device) {
  static std::mutex mutex;
  static DeviceInfo cache[64];
  if (device < 0 || device >= 64)
    detail::fail(ErrorKind::kValue, "q", "q: CUDA device index " + std::to_string(device) + " is out of range");
  std::lock_guard<std::mutex> lock(mutex);
  DeviceInfo& info = cache[device];
  if (info.major < 0) {
    cudaDeviceProp prop{};
    const cudaError_t err = cudaGetDeviceProperties(&prop, device);
    if (err != cudaSuccess) fail_cuda(err, "cudaGetDeviceProperties");
    info.major = prop.major;
    info.minor = prop.minor;
    info.sm_count = prop.multiProcessorCount;
  }
  return info;
}

// cuTensorMapEncodeTiled from the driver, looked up once (no link to libcuda).
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess)
      f = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// The TMA descriptor of a bf16 [rows, heads, 128] tensor (3-D, innermost
// first: 128 channels, heads, rows) with boxes of 16 rows x 1 head x `cols`
// channels, stored with `swizzle`; reads past the last row return zeros.
void encode_token_map(CUtensorMap* map, const void* data, int64_t rows, int64_t heads, int cols, const char* name,
                      CUtensorMapSwizzle swizzle = CU_TENSOR_MAP_SWIZZLE_NONE) {
  const PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder();
  if (encode == nullptr)
    detail::fail(ErrorKind::kRuntime, name, "flash_kda: the CUDA driver does not provide cuTensorMapEncodeTiled");
  const cuuint64_t dims[3] = {cuuint64_t(kHeadDim), cuuint64_t(heads), cuuint64_t(rows)};
  const cuuint64_t strides[2] = {cuuint64_t(kHeadDim * 2), cuuint64_t(heads * kHeadDim * 2)};  // bytes, dims 1..2
  const cuuint32_t box[3] = {cuuint32_t(cols), 1, cuuint32_t(kChunk)};
  const cuuint32_t element_strides[3] = {1, 1, 1};
  const CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void*>(data), dims, strides, box,
                            element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    detail::fail(ErrorKind::kRuntime, name,
                 std::string("flash_kda: cuTensorMapEncodeTiled failed for ") + name + " (CUresult " +
                     std::to_string(int(r)) + ")");
}

// cudaGetDeviceCount, asked once per process: the visible devices do not
// change under a running process, and fwd should not pay for the query.
struct DeviceCount {
  cudaError_t err;
  int count;
};
const DeviceCount& device_count() {
  static const DeviceCount cached = [] {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) cudaGetLastError();  // clear the sticky "no device" error
    return DeviceCount{err, n};
  }();
  return cached;
}

sm90::StateKind state_kind(const TensorRef& t) {
  if (!t.present()) return sm90::StateKind::kNone;
  return t.dtype == DType::kFloat32 ? sm90::StateKind::kFloat32 : sm90::StateKind::kBFloat16;
}

bool built_for_sm90a() {
#ifdef FLASH_KDA_HAS_SM90A
  return true;
#else
  return false;
#endif
}

// The device argument check: needed when an index tensor's contents must be
// validated (cu_seqlens, state indices, checkpoint offsets).
bool needs_device_check(const FwdParams& params, const FwdShape& shape) {
  return shape.varlen || params.state_indices.present() || params.checkpoint_offsets.present();
}

// Bounds of the slot indices (see validate_serving_contents, the host twin).
sm90::DeviceCheck device_check_bounds(const FwdParams& p) {
  sm90::DeviceCheck c{};
  if (!p.state_indices.present()) return c;
  c.read_bound = p.initial_state.present() ? p.initial_state.shape[0] : p.final_state.shape[0];
  if (!p.final_state_indices.present() && p.final_state.present())
    c.read_bound = std::min(c.read_bound, p.final_state.shape[0]);
  c.read_words = (c.read_bound + 31) / 32;
  if (p.final_state_indices.present()) {
    c.write_bound = p.final_state.shape[0];
    c.write_words = (c.write_bound + 31) / 32;
  }
  c.in_place = p.initial_state.present() && p.final_state.present() &&
               p.initial_state.data == p.final_state.data;
  return c;
}

uint32_t int32_bit(const TensorRef& t, uint32_t bit) {
  return t.present() && t.dtype == DType::kInt32 ? bit : 0u;
}

}  // namespace

DeviceGuard::DeviceGuard(int device) {
  if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
  if (previous_ != device) {
    const cudaError_t err = cudaSetDevice(device);
    if (err != cudaSuccess) fail_cuda(err, "cudaSetDevice");
  }
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) cudaSetDevice(previous_);
}

void require_grid_heads(int64_t heads) {
  if (heads > 65535)
    detail::fail(ErrorKind::kValue, "q", "q: at most 65535 heads are supported, got " + std::to_string(heads));
}

void require_device(int device) {
  const DeviceCount& dc = device_count();
  if (dc.err != cudaSuccess || device < 0 || device >= dc.count)
    detail::fail(ErrorKind::kUnsupported, "q",
                 "q: is a CUDA tensor on device " + std::to_string(device) + ", but the CUDA runtime reports " +
                     (dc.err != cudaSuccess ? std::string(cudaGetErrorString(dc.err))
                                            : std::to_string(dc.count) + " device(s)"));
  const DeviceInfo& info = device_info(device);
  if (!(built_for_sm90a() && info.major == 9 && info.minor == 0))
    detail::fail(ErrorKind::kUnsupported, "q",
                 "q: no flash-kda CUDA kernel for this GPU (compute capability " +
                     std::to_string(info.major) + "." + std::to_string(info.minor) +
                     "); this build has kernels for: " + compiled_architectures());
}

int sm_count(int device_id) { return device_info(device_id).sm_count; }

bool available(int device_id) {
  const DeviceCount& dc = device_count();
  if (dc.err != cudaSuccess || device_id < 0 || device_id >= dc.count) return false;
  const DeviceInfo& info = device_info(device_id);
  return built_for_sm90a() && info.major == 9 && info.minor == 0;
}

// Value-block width of the forward kernel for `items` (sequence, head)
// pairs: as wide as possible while the grid still fills the GPU; narrower
// blocks give more CTAs per head but each repeats the whole prep.
// FLASH_KDA_VALUE_BLOCK=128|64|32 forces a width (tests and benchmarks
// compare them on one shape).
static int value_block_width(int64_t items, int sm_count) {
  if (const char* forced = std::getenv("FLASH_KDA_VALUE_BLOCK")) {
    const std::string w(forced);
    if (w == "128" || w == "64" || w == "32") return std::stoi(w);
  }
  if (items * 2 > sm_count) return 128;
  return items * 4 <= sm_count ? 32 : 64;
}

// Context parallelism inside one GPU, for few (sequence, head) pairs and long
// sequences, where one CTA chain per head (~2 us per 16-token chunk) leaves
// most SMs idle and the chain's length sets the time. Each sequence is cut
// into P segments; then, on the same stream:
//   1. segments 0..P-2 from zero (segment 0 from the initial state) -> R_j,
//      and segments 1..P-2 from the identity with v = 0 -> M_j (the
//      transition: a segment maps a start state S to S·M_j + R_j); no output;
//   2. S_{j+1} = S_j·M_j + R_j, sequentially per (sequence, head)
//      (segment_combine.cu, microseconds);
//   3. all segments from their S_j, writing out (and the last one final_state).
// About 3x the chunk work of one pass, spread over P x more CTAs. Fixed-length
// calls only (the segment bounds come from T, no device sync); no state
// pools or checkpoints. Workspace: two fp32 state arrays [N * P, H, 128, 128].
// FLASH_KDA_SEGMENTS=P forces P (1 = off; tests), else the plan below.
struct SegmentPlan {
  int segments = 0;    // P; 0 = one pass
  int64_t length = 0;  // tokens per segment (a multiple of 64)
};

constexpr int64_t kMaxSegmentedPairs = 16;          // N x H up to this: bv32 CTAs fill <= 64 SMs
constexpr int64_t kMinSegmentedTokens = 16384;      // shorter chains gain too little
constexpr int64_t kMinSegmentTokens = 2048;         // a segment's own chain must dwarf the combine

SegmentPlan segment_plan(const FwdParams& params, const FwdShape& shape, int sm_count) {
  SegmentPlan plan;
  if (shape.varlen || params.state_indices.present() || params.checkpoints.present() || shape.tokens < 2)
    return plan;
  const int64_t pairs = shape.num_sequences * shape.heads;
  int64_t p = 1;
  if (const char* forced = std::getenv("FLASH_KDA_SEGMENTS")) {
    p = std::max<int64_t>(1, std::atoll(forced));
  } else {
    if (pairs > kMaxSegmentedPairs || shape.tokens < kMinSegmentedTokens) return plan;
    // The largest power of two whose first pass (2P - 3 segment runs per pair)
    // fits in two waves of one CTA per SM.
    while (pairs * (4 * p - 3) <= 2 * int64_t(sm_count) && shape.tokens / (2 * p) >= kMinSegmentTokens) p *= 2;
  }
  p = std::min<int64_t>(p, (shape.tokens + kChunk - 1) / kChunk);
  if (p < 2) return plan;
  const int64_t unit = 64;
  plan.length = ((shape.tokens + p - 1) / p + unit - 1) / unit * unit;
  plan.segments = int((shape.tokens + plan.length - 1) / plan.length);
  if (plan.segments < 2) return SegmentPlan{};
  return plan;
}

size_t segment_workspace_bytes(const SegmentPlan& plan, const FwdShape& shape) {
  if (plan.segments == 0) return 0;
  return 2 * size_t(shape.num_sequences) * size_t(plan.segments) * size_t(shape.heads) * kHeadDim * kHeadDim *
         sizeof(float);
}

// Encodes v's tensor map for value-block width bv and launches the kernel.
void launch_kernel(sm90::FwdKernelParams k, int bv, int device, cudaStream_t stream) {
  k.num_vblocks = kHeadDim / bv;
  // v: boxes of 64 columns (128-byte rows) with the 128-byte swizzle, or one
  // of 32 with the 64-byte swizzle (SharedStorage::raw_v_lane reads them).
  if (k.total_rows > 0)
    encode_token_map(&k.tmap_v, k.v, k.total_rows, k.heads, bv >= 64 ? 64 : bv, "v",
                     bv >= 64 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_64B);
  const bool unbounded = k.gate_kind != sm90::GateKind::kLowerBound;
  const bool checkpoints = k.checkpoint_chunks > 0;
  cudaError_t err;
  switch (bv) {
    case 32: err = sm90::launch_fwd_variant<32>(k, unbounded, checkpoints, device, stream); break;
    case 64: err = sm90::launch_fwd_variant<64>(k, unbounded, checkpoints, device, stream); break;
    default: err = sm90::launch_fwd_variant<128>(k, unbounded, checkpoints, device, stream); break;
  }
  if (err != cudaSuccess) fail_cuda(err, "launching the SM90 forward kernel");
}

// The three passes of the plan above; `states` is the (16-byte aligned) workspace.
void forward_segmented(const sm90::FwdKernelParams& base, const SegmentPlan& plan, const FwdShape& shape,
                       float* states, int sm_count, int device, cudaStream_t stream) {
  const int P = plan.segments;
  const int64_t n = shape.num_sequences;
  float* transitions = states + n * P * shape.heads * kHeadDim * kHeadDim;
  auto run = [&](sm90::FwdKernelParams k, int first, int count) {
    k.segments = P;
    k.segment_first = first;
    k.segment_count = count;
    k.segment_len = plan.length;
    k.num_sequences = int(n * count);
    launch_kernel(k, value_block_width(n * count * shape.heads, sm_count), device, stream);
  };
  sm90::FwdKernelParams r = base;  // 1a. R_j (and segment 0's initial state into slot 0)
  r.skip_output = true;
  r.segment_final = states;
  run(r, 0, P - 1);
  if (P >= 3) {
    sm90::FwdKernelParams m = base;  // 1b. M_j
    m.identity_start = m.zero_values = m.skip_output = true;
    m.segment_final = transitions;
    run(m, 1, P - 2);
    const cudaError_t err = sm90::launch_segment_combine(states, transitions, n, int(shape.heads), P, stream);
    if (err != cudaSuccess) fail_cuda(err, "launching the segment combine");  // 2.
  }
  sm90::FwdKernelParams o = base;  // 3. outputs
  o.segment_initial = states;
  run(o, 0, P);
}

size_t workspace_size(const FwdParams& params, const FwdShape& shape) {
  size_t bytes = 0;
  if (needs_device_check(params, shape)) {
    const sm90::DeviceCheck c = device_check_bounds(params);
    bytes = kStatusBytes + size_t(c.read_words + c.write_words) * sizeof(uint32_t);
    if (shape.varlen) bytes += kRunAlign - 1 + size_t(shape.num_sequences) * sizeof(sm90::SequenceRun);
  }
  const int device = params.q.device_id;
  if (params.q.device == DeviceType::kCUDA && available(device)) {
    // Segments only in fixed-length calls, which need no check words: the
    // segment states start at the workspace's start.
    const size_t segment_bytes = segment_workspace_bytes(segment_plan(params, shape, device_info(device).sm_count), shape);
    if (segment_bytes > 0) bytes = std::max(bytes, segment_bytes);
  }
  return bytes;
}

void forward(const FwdParams& params, const FwdShape& shape, void* workspace, size_t,
             cudaStream_t stream) {
  const int device = params.q.device_id;
  require_device(device);
  require_grid_heads(shape.heads);
  const int64_t row_limit = (int64_t(1) << 31) - 2 * kChunk;  // TMA row coordinates are 32-bit
  if (shape.batch * shape.tokens > row_limit)
    detail::fail(ErrorKind::kValue, "q",
                 "q: at most " + std::to_string(row_limit) + " token rows (B*T) are supported, got " +
                     std::to_string(shape.batch * shape.tokens));
  const int64_t vblock_limit = int64_t(1) << 31;
  if (shape.num_sequences * 4 >= vblock_limit)
    detail::fail(ErrorKind::kValue, "cu_seqlens",
                 "cu_seqlens: too many sequences (" + std::to_string(shape.num_sequences) + ")");
  if (shape.num_sequences == 0 || shape.heads == 0) return;  // nothing to read or write

  DeviceGuard guard(device);

  sm90::FwdKernelParams k{};
  k.q = params.q.data;
  k.k = params.k.data;
  k.v = params.v.data;
  k.g = params.g.data;
  k.beta = params.beta.data;
  k.out = params.out.data;
  k.A_log = params.A_log.present() ? static_cast<const float*>(params.A_log.data) : nullptr;
  k.dt_bias = params.dt_bias.present() ? static_cast<const float*>(params.dt_bias.data) : nullptr;
  k.initial_state = params.initial_state.present() ? params.initial_state.data : nullptr;
  k.final_state = params.final_state.present() ? params.final_state.data : nullptr;
  k.initial_kind = state_kind(params.initial_state);
  k.final_kind = state_kind(params.final_state);
  k.cu_seqlens = shape.varlen ? params.cu_seqlens.data : nullptr;
  k.status = nullptr;
  auto data_or_null = [](const TensorRef& t) { return t.present() ? t.data : nullptr; };
  k.state_indices = data_or_null(params.state_indices);
  k.final_state_indices = data_or_null(params.final_state_indices);
  k.zero_start = static_cast<const uint8_t*>(data_or_null(params.zero_start));
  k.checkpoints = data_or_null(params.checkpoints);
  k.checkpoint_offsets = data_or_null(params.checkpoint_offsets);
  k.checkpoint_kind = state_kind(params.checkpoints);
  k.checkpoint_chunks = params.checkpoints.present() ? int(params.checkpoint_interval / kChunk) : 0;
  k.initial_slots = params.initial_state.present() ? params.initial_state.shape[0] : 0;
  k.final_slots = params.final_state.present() ? params.final_state.shape[0] : 0;
  k.checkpoint_rows = params.checkpoints.present() ? params.checkpoints.shape[0] : 0;
  k.int32_indices = int32_bit(params.cu_seqlens, sm90::kCuSeqlensInt32) |
                    int32_bit(params.state_indices, sm90::kStateIndicesInt32) |
                    int32_bit(params.final_state_indices, sm90::kFinalStateIndicesInt32) |
                    int32_bit(params.checkpoint_offsets, sm90::kCheckpointOffsetsInt32);
  k.beta_stride_b = params.beta.strides[0];
  k.beta_stride_t = params.beta.strides[1];
  k.beta_stride_h = params.beta.strides[2];
  k.seq_len = shape.tokens;
  k.total_rows = shape.batch * shape.tokens;
  k.heads = int(shape.heads);
  k.num_sequences = int(shape.num_sequences);
  k.scale = float(params.scale);
  k.gate_scale = float(params.lower_bound * kLog2e);
  k.min_gate = float(kMinTokenLogDecay * kLog2e);
  switch (params.gate_mode) {
    case GateMode::kSoftplus: k.gate_kind = sm90::GateKind::kSoftplus; break;
    case GateMode::kPrecomputed:
      k.gate_kind = params.g.dtype == DType::kFloat32 ? sm90::GateKind::kPrecomputedF32
                                                      : sm90::GateKind::kPrecomputed;
      break;
    default: k.gate_kind = sm90::GateKind::kLowerBound; break;
  }

  if (needs_device_check(params, shape)) {
    sm90::DeviceCheck check = device_check_bounds(params);
    check.status = static_cast<int32_t*>(workspace);
    check.bitmaps = reinterpret_cast<uint32_t*>(static_cast<char*>(workspace) + kStatusBytes);
    if (shape.varlen) {
      check.runs = runs_at(workspace, kStatusBytes + size_t(check.read_words + check.write_words) * sizeof(uint32_t));
      k.sequence_runs = check.runs;
    }
    const cudaError_t err = sm90::launch_check_arguments(k, check, stream);
    if (err != cudaSuccess) fail_cuda(err, "launching the device argument check");
    k.status = check.status;
  }

  // The kernel loads a chunk's token rows with TMA instructions (two 64-column
  // boxes per tensor); a row coordinate is a 32-bit integer. No rows: nothing is loaded.
  if (k.total_rows > 0) {
    // q, k, g: boxes of 64 channels with the 128-byte swizzle (SharedStorage::Raw).
    encode_token_map(&k.tmap_q, k.q, k.total_rows, shape.heads, 64, "q", CU_TENSOR_MAP_SWIZZLE_128B);
    encode_token_map(&k.tmap_k, k.k, k.total_rows, shape.heads, 64, "k", CU_TENSOR_MAP_SWIZZLE_128B);
    if (params.g.dtype == DType::kBFloat16)
      encode_token_map(&k.tmap_g, k.g, k.total_rows, shape.heads, 64, "g", CU_TENSOR_MAP_SWIZZLE_128B);
  }

  const int sm_count = device_info(device).sm_count;
  const SegmentPlan plan = segment_plan(params, shape, sm_count);
  if (plan.segments > 0 && reinterpret_cast<uintptr_t>(workspace) % 16 == 0) {
    forward_segmented(k, plan, shape, static_cast<float*>(workspace), sm_count, device, stream);
    return;
  }
  launch_kernel(k, value_block_width(shape.num_sequences * shape.heads, sm_count), device, stream);
}

const char* compiled_architectures() { return FLASH_KDA_CUDA_ARCHS_STRING; }

}  // namespace flash_kda::cuda
