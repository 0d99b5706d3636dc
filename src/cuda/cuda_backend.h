// Entry points of the CUDA backend, callable from host-only C++.
#pragma once

#include "flash_kda/flash_kda.h"

namespace flash_kda::cuda {

// Whether kernels for this device's compute capability are compiled in.
bool available(int device_id);

// Workspace bytes for the validated problem.
size_t workspace_size(const FwdParams& params, const FwdShape& shape);

// Validated parameters on CUDA tensors; asynchronous on `stream`.
void forward(const FwdParams& params, const FwdShape& shape, void* workspace,
             size_t workspace_bytes, cudaStream_t stream);

// Multiprocessors of a visible device (asked once per device; the
// launchers size their grids with it).
int sm_count(int device_id);

// Architectures this build was compiled for, e.g. "90a".
const char* compiled_architectures();

// Throws flash_kda::Error (kUnsupported, argument "q") unless `device_id` is a
// visible device with kernels in this build. The device count is asked once
// per process.
void require_device(int device_id);
// Refuses more heads than a grid's y dimension holds (one CTA row per head).
void require_grid_heads(int64_t heads);

// Makes `device` current for its scope and restores the caller's device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace flash_kda::cuda
