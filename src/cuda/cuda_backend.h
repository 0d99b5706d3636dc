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

// Architectures this build was compiled for, e.g. "90a".
const char* compiled_architectures();

}  // namespace flash_kda::cuda
