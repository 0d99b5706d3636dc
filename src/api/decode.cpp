// The public decode entry points: validate once, then hand the call to a backend.
#include "api/validate.h"
#include "cpu/reference_decode.h"
#include "cuda/decode/decode_backend.h"

namespace flash_kda {

DecodeShape validate_decode(const DecodeParams& params) {
  return detail::validate_decode(params, {});
}

size_t decode_workspace_size(const DecodeParams& params) {
  const DecodeShape shape = validate_decode(params);
  if (params.q.device == DeviceType::kCPU) return 0;
  return cuda::decode_workspace_size(params, shape);
}

void decode(const DecodeParams& params, void* workspace, size_t workspace_bytes,
            cudaStream_t stream) {
  const DecodeShape shape = validate_decode(params);
  if (params.q.device == DeviceType::kCPU) {
    // Host tensors: the float64 path, stored in the caller's dtypes.
    cpu::reference_decode(params, shape);
    return;
  }
  const size_t needed = cuda::decode_workspace_size(params, shape);
  if (workspace_bytes < needed || (needed > 0 && workspace == nullptr))
    detail::fail(ErrorKind::kValue, "workspace",
                 "workspace: expected at least " + std::to_string(needed) +
                     " bytes (see decode_workspace_size), got " + std::to_string(workspace_bytes) +
                     (workspace == nullptr ? " at a null pointer" : ""));
  cuda::decode(params, shape, workspace, workspace_bytes, stream);
}

void reference_decode(const DecodeParams& params) {
  detail::ValidatePolicy policy;
  policy.allow_wide_outputs = true;
  const DecodeShape shape = detail::validate_decode(params, policy);
  if (params.q.device != DeviceType::kCPU)
    detail::fail(ErrorKind::kValue, "q",
                 "q: reference_decode runs on host tensors only, got a CUDA tensor");
  cpu::reference_decode(params, shape);
}

}  // namespace flash_kda
