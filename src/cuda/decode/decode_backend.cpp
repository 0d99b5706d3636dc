// The CUDA decode backend's host side: device checks, parameter packing, the
// launches (the index check unless the decode kernel does it itself, then
// decode). No allocation, no host synchronisation.
#include "cuda/decode/decode_backend.h"

#include <cuda_runtime.h>

#include <string>

#include "api/validate.h"
#include "common/constants.h"
#include "cuda/cuda_backend.h"
#include "cuda/decode/decode_launch.h"

namespace flash_kda::cuda {
namespace {

[[noreturn]] void fail_cuda(cudaError_t err, const std::string& what) {
  detail::fail(ErrorKind::kRuntime, "", "flash_kda: " + what + " failed: " + cudaGetErrorString(err));
}

}  // namespace

size_t decode_workspace_size(const DecodeParams&, const DecodeShape&) {
  return decode_gpu::kStatusBytes;
}

void decode(const DecodeParams& params, const DecodeShape& shape, void* workspace, size_t,
            cudaStream_t stream) {
  const int device = params.q.device_id;
  require_device(device);  // cuda_backend.cpp: cached device count, same messages as fwd
  require_grid_heads(shape.heads);
  if (shape.num_sequences * decode_gpu::kMaxValueBlocks >= (int64_t(1) << 31))
    detail::fail(ErrorKind::kValue, "state_indices",
                 "state_indices: too many sequences (" + std::to_string(shape.num_sequences) + ")");
  if (shape.num_sequences == 0 || shape.heads == 0) return;  // nothing to read or write

  DeviceGuard guard(device);

  decode_gpu::DecodeKernelParams k{};
  k.q = params.q.data;
  k.k = params.k.data;
  k.v = params.v.data;
  k.g = params.g.data;
  k.beta = params.beta.data;
  k.out = params.out.data;
  k.A_log = static_cast<const float*>(params.A_log.data);
  k.dt_bias = static_cast<const float*>(params.dt_bias.data);
  k.state = params.state.data;
  k.state_indices = params.state_indices.data;
  k.indices_int64 = params.state_indices.dtype == DType::kInt64;
  k.cu_seqlens = shape.varlen ? params.cu_seqlens.data : nullptr;
  k.cu_seqlens_int64 = shape.varlen && params.cu_seqlens.dtype == DType::kInt64;
  k.status = static_cast<int32_t*>(workspace);
  k.pool_size = shape.pool_size;
  k.total_tokens = shape.total_tokens;
  k.num_sequences = shape.num_sequences;
  k.tokens = int(shape.tokens);
  k.heads = int(shape.heads);
  k.scale = float(params.scale);
  k.gate_scale = float(params.lower_bound * kLog2e);
  // Small calls: one launch, each decode CTA checks the indices itself (and
  // CTA (0, 0) writes the status word); larger ones: the check kernel first.
  k.fused_check = shape.num_sequences <= decode_gpu::kFusedCheckMaxSequences;

  cudaError_t err = cudaSuccess;
  if (!k.fused_check) {
    err = decode_gpu::launch_decode_check(k, stream);
    if (err != cudaSuccess) fail_cuda(err, "launching the decode index check");
  }
  const int sms = sm_count(device);  // cuda_backend.cpp: asked once per device
  err = params.state.dtype == DType::kFloat32
            ? decode_gpu::launch_decode<decode_gpu::StateType::kFloat32>(k, device, sms, stream)
            : decode_gpu::launch_decode<decode_gpu::StateType::kBFloat16>(k, device, sms, stream);
  if (err != cudaSuccess) fail_cuda(err, "launching the decode kernel");
}

}  // namespace flash_kda::cuda
