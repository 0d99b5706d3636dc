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

// Checks the contents of a host cu_seqlens array (int32 or int64): starts
// at 0, never decreases, ends at `total_tokens`. Throws Error naming "cu_seqlens".
void validate_cu_seqlens_contents(const TensorRef& cu_seqlens, int64_t total_tokens);

// Checks the contents of host state_indices / final_state_indices /
// checkpoint_offsets (see FwdParams). Throws Error naming the argument.
void validate_serving_contents(const FwdParams& params, const FwdShape& shape);

// Tokens of sequence n: from cu_seqlens (host) or T.
int64_t host_sequence_length(const FwdParams& params, const FwdShape& shape, int64_t n);

// Preconditions of `decode` (and, with allow_wide_outputs, reference_decode);
// on host tensors also the contents of state_indices and cu_seqlens.
DecodeShape validate_decode(const DecodeParams& params, const ValidatePolicy& policy);

[[noreturn]] void fail(ErrorKind kind, const std::string& argument, const std::string& message);

}  // namespace flash_kda::detail
