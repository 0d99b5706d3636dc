// Entry points of the CUDA decode backend, callable from host-only C++.
#pragma once

#include "flash_kda/flash_kda.h"

namespace flash_kda::cuda {

// Workspace bytes of a validated decode call on CUDA tensors (the status word).
size_t decode_workspace_size(const DecodeParams& params, const DecodeShape& shape);

// Validated parameters on CUDA tensors; asynchronous on `stream`.
void decode(const DecodeParams& params, const DecodeShape& shape, void* workspace,
            size_t workspace_bytes, cudaStream_t stream);

}  // namespace flash_kda::cuda
