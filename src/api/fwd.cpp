// The public entry points: validate once, then hand the call to a backend.
#include "api/validate.h"
#include "cpu/cpu_backend.h"
#include "cuda/cuda_backend.h"

namespace flash_kda {

FwdShape validate_fwd(const FwdParams& params) { return detail::validate(params, {}); }

size_t fwd_workspace_size(const FwdParams& params) {
  const FwdShape shape = validate_fwd(params);
  if (params.q.device == DeviceType::kCPU) return 0;
  return cuda::workspace_size(params, shape);
}

void fwd(const FwdParams& params, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  const FwdShape shape = validate_fwd(params);
  if (params.q.device == DeviceType::kCPU) {
    cpu::chunked_forward(params, shape);
    return;
  }
  const size_t needed = cuda::workspace_size(params, shape);
  if (workspace_bytes < needed || (needed > 0 && workspace == nullptr))
    detail::fail(ErrorKind::kValue, "workspace",
                 "workspace: expected at least " + std::to_string(needed) +
                     " bytes (see fwd_workspace_size), got " + std::to_string(workspace_bytes) +
                     (workspace == nullptr ? " at a null pointer" : ""));
  cuda::forward(params, shape, workspace, workspace_bytes, stream);
}

void reference_fwd(const FwdParams& params) {
  detail::ValidatePolicy policy;
  policy.allow_wide_outputs = true;
  const FwdShape shape = detail::validate(params, policy);
  if (params.q.device != DeviceType::kCPU)
    detail::fail(ErrorKind::kValue, "q", "q: reference_fwd runs on host tensors only, got a CUDA tensor");
  cpu::reference_forward(params, shape);
}

bool cuda_backend_available(int device_id) { return cuda::available(device_id); }

std::string build_info() {
  return std::string("flash-kda ") + FLASH_KDA_VERSION + ", CUDA architectures: " +
         cuda::compiled_architectures();
}

}  // namespace flash_kda
