// flash-kda public C++ API: the Kimi Delta Attention (KDA) forward.
//
// The math and the argument contract are those of FlashKDA's `flash_kda.fwd`
// (see docs/kda.md). This header has no CUDA, Python or PyTorch dependency:
// callers describe tensors with `TensorRef` (raw pointer, dtype, shape,
// strides, device) and pass a workspace they own.
//
//   flash_kda::FwdParams p;            // fill q, k, v, g, beta, out, A_log, dt_bias, ...
//   size_t bytes = flash_kda::fwd_workspace_size(p);
//   flash_kda::fwd(p, workspace, bytes, stream);   // throws flash_kda::Error
//
// Host tensors run the CPU backend, CUDA tensors the CUDA backend, on `stream`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

// Same declaration as CUDA's driver_types.h, so this header needs no CUDA include.
typedef struct CUstream_st* cudaStream_t;

namespace flash_kda {

// Head sizes supported today (K == V == 128).
inline constexpr int kHeadDim = 128;
// Documented range of `lower_bound` (natural-log decay per token).
inline constexpr double kMinLowerBound = -5.0;
inline constexpr double kMaxLowerBound = 0.0;

// How `g` becomes the per-channel natural-log decay of a token (docs/kda.md):
//   kLowerBound   gate = lower_bound * sigmoid(exp(A_log[h]) * (g + dt_bias[h]))   FlashKDA's
//   kSoftplus     gate = -exp(A_log[h]) * softplus(g + dt_bias[h])                   Kimi-Linear's
//                 (unbounded; dt_bias optional: absent = zeros; lower_bound unused)
//   kPrecomputed  gate = g: already the log decay (<= 0), bf16 or fp32; A_log and
//                 dt_bias must be absent, lower_bound unused
enum class GateMode : int { kLowerBound, kSoftplus, kPrecomputed };

const char* gate_mode_name(GateMode mode);

// The fast backends (CPU chunked, CUDA) clamp the per-token log decay of the
// unbounded modes at this value: exp(-10) = 4.5e-5 of the old state survives
// a token that should erase it, far below bf16 resolution (docs/numerics.md).
// The float64 reference does not clamp.
inline constexpr double kMinTokenLogDecay = -10.0;

enum class DType : int { kBFloat16, kFloat16, kFloat32, kFloat64, kInt32, kInt64, kOther, kUInt8, kBool };
enum class DeviceType : int { kCPU, kCUDA };

const char* dtype_name(DType dtype);
size_t dtype_size(DType dtype);  // 0 for kOther

// A non-owning view of a tensor. `ndim < 0` means "not given" (None).
// Strides are in elements, as in DLPack.
struct TensorRef {
  static constexpr int kMaxDims = 4;
  void* data = nullptr;
  DType dtype = DType::kOther;
  int ndim = -1;
  int64_t shape[kMaxDims] = {0, 0, 0, 0};
  int64_t strides[kMaxDims] = {0, 0, 0, 0};
  DeviceType device = DeviceType::kCPU;
  int device_id = 0;

  bool present() const { return ndim >= 0; }
  int64_t numel() const;
  bool is_contiguous() const;  // row-major, size-1 dims may have any stride
};

// A contiguous row-major TensorRef over `data`.
TensorRef make_tensor(void* data, DType dtype, std::initializer_list<int64_t> shape,
                      DeviceType device = DeviceType::kCPU, int device_id = 0);

// Arguments of the forward; names follow FlashKDA's `fwd`.
struct FwdParams {
  TensorRef q;        // bf16 [B, T, H, K]
  TensorRef k;        // bf16 [B, T, H, K]
  TensorRef v;        // bf16 [B, T, H, V]
  TensorRef g;        // bf16 [B, T, H, K]  gate logits before activation
                      // (kPrecomputed: the log decay itself, bf16 or fp32)
  TensorRef beta;     // bf16 [B, T, H]     write-strength logits (sigmoid inside)
  double scale = 0;   // query scale, usually K ** -0.5
  TensorRef out;      // bf16 [B, T, H, V]  written
  TensorRef A_log;    // fp32 [H]      (absent with kPrecomputed)
  TensorRef dt_bias;  // fp32 [H, K]   (optional with kSoftplus; absent with kPrecomputed)
  double lower_bound = -5.0;   // in [-5, 0]; used by kLowerBound only
  GateMode gate_mode = GateMode::kLowerBound;
  TensorRef initial_state;     // optional, bf16 or fp32 [N, H, V, K]
  TensorRef final_state;       // optional, bf16 or fp32 [N, H, V, K], written
  TensorRef cu_seqlens;        // optional, int64 or int32 [N + 1]; then B == 1

  // Serving engines (docs/kda.md, "State pools and checkpoints"). All optional.
  // With state_indices (int32/int64 [N]) the states are pools [P, H, V, K]:
  // sequence n reads slot state_indices[n] and writes its final state to
  // final_state_indices[n] if given, else to the same slot. A negative
  // state_indices[n] marks padding: nothing read or written, out rows zeroed.
  // A negative final_state_indices[n] skips that sequence's final-state write.
  // Non-negative indices must be distinct (and < P). zero_start (bool/uint8
  // [N]): nonzero = start from a zero state instead of reading the slot.
  TensorRef state_indices;
  TensorRef final_state_indices;
  TensorRef zero_start;
  // checkpoints (bf16/fp32 [C, H, V, K], written): sequence n's state after
  // tokens i * checkpoint_interval (i = 1 .. floor(len_n / interval)) goes to
  // row checkpoint_offsets[n] + i - 1; checkpoint_offsets is int32/int64
  // [N + 1] with offsets[n + 1] - offsets[n] == floor(len_n / interval).
  // checkpoint_interval: 0 (off) or a positive multiple of kCheckpointGranule.
  TensorRef checkpoints;
  TensorRef checkpoint_offsets;
  int64_t checkpoint_interval = 0;
};

// checkpoint_interval must be a multiple of this (the kernels' chunk).
inline constexpr int64_t kCheckpointGranule = 16;

// Which argument-level check failed. Bindings map kType to TypeError,
// kValue to ValueError and the rest to RuntimeError.
enum class ErrorKind : int { kValue, kType, kUnsupported, kRuntime };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string argument, const std::string& message)
      : std::runtime_error(message), kind_(kind), argument_(std::move(argument)) {}
  ErrorKind kind() const { return kind_; }
  // The offending argument's name ("q", "cu_seqlens", ...); empty if none.
  const std::string& argument() const { return argument_; }

 private:
  ErrorKind kind_;
  std::string argument_;
};

// Problem sizes derived from validated parameters.
struct FwdShape {
  int64_t batch = 0;        // B
  int64_t tokens = 0;       // T (per row)
  int64_t heads = 0;        // H
  int64_t num_sequences = 0;  // N = B, or len(cu_seqlens) - 1
  bool varlen = false;
};

// Checks every precondition of `fwd` that can be checked without reading
// device memory and returns the sizes. Throws Error naming the argument.
FwdShape validate_fwd(const FwdParams& params);

// Bytes of workspace `fwd` needs for these parameters (may be 0).
// Calls validate_fwd.
size_t fwd_workspace_size(const FwdParams& params);

// Runs the forward. Writes `out` and, if given, `final_state`; nothing else.
// A refused call (Error thrown) writes nothing. For CUDA tensors the call is
// asynchronous on `stream`, does no host synchronisation and allocates
// nothing, so it can be captured in a CUDA graph; the contents of a CUDA
// `cu_seqlens` are checked on the device (see cuda_status below).
void fwd(const FwdParams& params, void* workspace, size_t workspace_bytes,
         cudaStream_t stream = nullptr);

// Status word the CUDA backend leaves at the start of the workspace (varlen
// calls, and calls with state indices or checkpoints): kStatusOk, or
// kStatusBadCuSeqlens when the device copy of cu_seqlens was not 0-based, non-decreasing and ending at T. That cannot be
// raised without a host sync, so instead nothing is computed and `out` and
// `final_state` are filled with NaN: never a plausible-looking result.
inline constexpr int32_t kStatusOk = 0;
inline constexpr int32_t kStatusBadCuSeqlens = 1;
// Further bits of the status word (it is a bit mask): state_indices /
// final_state_indices with an entry >= P (the pool's slot count) or a duplicate
// non-negative entry (or, with final_state the very same tensor as
// initial_state, a slot written by one sequence and read by another); and
// checkpoint_offsets not matching the sequence lengths. Then too nothing is
// computed, `out` and `checkpoints` are NaN-filled and no state slot is
// written (final_state is NaN-filled only when it is not a pool).
inline constexpr int32_t kStatusBadStateIndices = 2;
inline constexpr int32_t kStatusBadCheckpointOffsets = 4;

// The float64 token-by-token recurrence of docs/kda.md on host tensors: the
// oracle every test compares against. Same arguments as `fwd`, except that
// `out` may also be fp32 or fp64 and the states bf16, fp32 or fp64, so the
// oracle's result need not be rounded. Slow: O(T * H * K * V) scalar work.
void reference_fwd(const FwdParams& params);

// True when this build contains CUDA kernels for the given device's
// compute capability. False in a CPU-only build.
bool cuda_backend_available(int device_id);

// Human-readable description of the build (version, CUDA architectures).
std::string build_info();

}  // namespace flash_kda

// The decode step over a state pool (DecodeParams, decode, reference_decode).
#include "flash_kda/decode.h"
