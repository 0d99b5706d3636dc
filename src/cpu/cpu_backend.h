// The CPU backend: where a newcomer learns the algorithm.
//   reference_forward: float64, token by token, exactly the recurrence of docs/kda.md.
//   chunked_forward:   fp32, the chunked algorithm the GPU kernels use.
#pragma once

#include "flash_kda/flash_kda.h"

namespace flash_kda::cpu {

// Inputs validated; `out` may be bf16/fp32/fp64, states bf16/fp32/fp64.
void reference_forward(const FwdParams& params, const FwdShape& shape);

// Inputs validated against the `fwd` contract (bf16 out, bf16/fp32 states);
// out and states of dtype fp32/fp64 are also accepted (the tests use an fp32
// out to measure the fp32 algorithm's own error). Parallel over (sequence, head).
void chunked_forward(const FwdParams& params, const FwdShape& shape);

}  // namespace flash_kda::cpu
