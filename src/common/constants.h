// One source of truth for the sizes every backend shares.
#pragma once

#include "flash_kda/flash_kda.h"

namespace flash_kda {

// Tokens per chunk of the chunked algorithm (CPU chunked backend and the
// SM90 kernel). 16 keeps exp2(-cumsum(gate)) inside fp32/bf16 range for
// lower_bound >= -5: |cumsum| <= 16 * 5 * log2(e) = 115.4 < 127.
inline constexpr int kChunk = 16;

// log2(e): gates are applied in base 2 (exp2 is the cheap instruction).
inline constexpr double kLog2e = 1.4426950408889634;

// Epsilon inside the q/k L2 normalisation: x / sqrt(sum(x^2) + eps).
inline constexpr double kL2NormEps = 1e-6;

}  // namespace flash_kda
