// Validation shared by every backend and binding: one place that knows the
// preconditions of `fwd` and words the errors.
#pragma once

#include "flash_kda/flash_kda.h"

namespace flash_kda::detail {

// What a caller of the validator accepts beyond the `fwd` contract.
struct ValidatePolicy {
  // The float64 oracle may write fp32/fp64 outputs and take fp64 states.
  bool allow_wide_outputs = false;
};

FwdShape validate(const FwdParams& params, const ValidatePolicy& policy);

// Checks the contents of a host cu_seqlens array: starts at 0, never
// decreases, ends at `total_tokens`. Throws Error naming "cu_seqlens".
void validate_cu_seqlens_contents(const int64_t* cu_seqlens, int64_t count, int64_t total_tokens);

// Preconditions of `decode` (and, with allow_wide_outputs, reference_decode);
// on host tensors also the contents of state_indices and cu_seqlens.
DecodeShape validate_decode(const DecodeParams& params, const ValidatePolicy& policy);

[[noreturn]] void fail(ErrorKind kind, const std::string& argument, const std::string& message);

}  // namespace flash_kda::detail
