// The CPU backend of `decode`: the float64 oracle, and the host `decode` itself.
#pragma once

#include "flash_kda/flash_kda.h"

namespace flash_kda::cpu {

// Validated parameters on host tensors. For every sequence with a slot, runs
// its tokens through the float64 recurrence of reference_forward (the same
// code, over views of that sequence's tokens and of its pool slot) and writes
// out and the slot in their dtypes; padding rows (negative slot) get zero
// outputs. `out` may be bf16/fp32/fp64, `state` bf16/fp32/fp64.
void reference_decode(const DecodeParams& params, const DecodeShape& shape);

}  // namespace flash_kda::cpu
