// The decode kernel: one CTA per (sequence, head, block of 32 value rows).
//
//   1. read the status word, the sequence's pool slot and token range;
//   2. issue the loads of this CTA's 32 state rows into registers (fp32),
//      kLanesPerRow = 8 threads per 128-wide row, 16-byte vectors;
//   3. meanwhile warp w prepares token w (t <= 8 warps): L2-normalised q
//      (times scale) and k, per-channel decay exp2(gate_scale * sigmoid(
//      exp(A_log) (g + dt_bias))), sigmoid(beta) and the v entries of these
//      rows, into shared memory;
//   4. per token, per row: S *= decay; S += b (v - S k) k^T; o = S q, with
//      the two dot products reduced over the row's 8 lanes by shuffles;
//   5. store the state rows back in their dtype and the outputs (bf16).
//
// The work is memory-bound on the state (t = 1: 64 KiB read + written per
// fp32 head state against ~1.3 KiB of token data), so the kernel is built
// around keeping many 16-byte state loads in flight per SM: few registers,
// no shared-memory staging of the state, the prologue overlapping the loads.
#pragma once

#include "cuda/decode/decode_device_utils.cuh"

namespace flash_kda::decode_gpu {

// How a thread's 16 values of a state row are stored in memory: kVectors
// 16-byte vectors of kQuads * 4 columns; vector j of thread `sub` starts at
// column (j * kLanesPerRow + sub) * kQuads * 4, so the 8 threads of a row
// read 128 contiguous bytes per instruction.
template <StateType kState>
struct StateRowIo;

template <>
struct StateRowIo<StateType::kFloat32> {
  static constexpr int kQuads = 1;    // 4 floats per 16-byte vector
  static constexpr int kVectors = 4;
  using Element = float;
  __device__ __forceinline__ static void load(const float* row, int sub, float (&s)[kValuesPerThread]) {
#pragma unroll
    for (int j = 0; j < kVectors; ++j) {
      const float4 x = reinterpret_cast<const float4*>(row)[j * kLanesPerRow + sub];
      s[4 * j] = x.x;
      s[4 * j + 1] = x.y;
      s[4 * j + 2] = x.z;
      s[4 * j + 3] = x.w;
    }
  }
  __device__ __forceinline__ static void store(float* row, int sub, const float (&s)[kValuesPerThread]) {
#pragma unroll
    for (int j = 0; j < kVectors; ++j)
      reinterpret_cast<float4*>(row)[j * kLanesPerRow + sub] =
          make_float4(s[4 * j], s[4 * j + 1], s[4 * j + 2], s[4 * j + 3]);
  }
};

template <>
struct StateRowIo<StateType::kBFloat16> {
  static constexpr int kQuads = 2;    // 8 bf16 per 16-byte vector
  static constexpr int kVectors = 2;
  using Element = bf16;
  __device__ __forceinline__ static void load(const bf16* row, int sub, float (&s)[kValuesPerThread]) {
#pragma unroll
    for (int j = 0; j < kVectors; ++j) {
      const uint4 x = reinterpret_cast<const uint4*>(row)[j * kLanesPerRow + sub];
      const uint32_t w[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w[e]));
        s[8 * j + 2 * e] = f.x;
        s[8 * j + 2 * e + 1] = f.y;
      }
    }
  }
  __device__ __forceinline__ static void store(bf16* row, int sub, const float (&s)[kValuesPerThread]) {
#pragma unroll
    for (int j = 0; j < kVectors; ++j) {
      uint32_t w[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const __nv_bfloat162 b = __floats2bfloat162_rn(s[8 * j + 2 * e], s[8 * j + 2 * e + 1]);
        w[e] = *reinterpret_cast<const uint32_t*>(&b);
      }
      reinterpret_cast<uint4*>(row)[j * kLanesPerRow + sub] = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
};

// Per-token vectors of the CTA's (sequence, head), prepared by the prologue.
struct TokenStorage {
  float4 q[kMaxDecodeTokens][kHeadDim / 4];      // scale * q / ||q||
  float4 k[kMaxDecodeTokens][kHeadDim / 4];      // k / ||k||
  float4 decay[kMaxDecodeTokens][kHeadDim / 4];  // exp(gate), per key channel
  float b[kMaxDecodeTokens];                     // sigmoid(beta)
  float v[kMaxDecodeTokens][kRowsPerCta];        // v entries of this CTA's rows
  float o[kMaxDecodeTokens][kRowsPerCta];        // outputs of this CTA's rows
};

// Fills `value` into this CTA's rows of out for tokens [begin, begin + len).
__device__ __forceinline__ void fill_out_rows(const DecodeKernelParams& p, int64_t begin, int len,
                                              int head, int vblock, float value) {
  const int tid = threadIdx.x;
  if (tid >= len * kRowsPerCta) return;
  const int64_t token = begin + tid / kRowsPerCta;
  const int64_t e = (token * p.heads + head) * kHeadDim + vblock * kRowsPerCta + tid % kRowsPerCta;
  static_cast<bf16*>(p.out)[e] = __float2bfloat16_rn(value);
}

// The whole of out NaN (grid-stride, 16-byte stores); no state is written.
__device__ __forceinline__ void poison_all_out(const DecodeKernelParams& p) {
  const uint4 nan4 = make_uint4(0x7fc07fc0u, 0x7fc07fc0u, 0x7fc07fc0u, 0x7fc07fc0u);
  const int64_t ctas = int64_t(gridDim.x) * gridDim.y;
  const int64_t cta = int64_t(blockIdx.y) * gridDim.x + blockIdx.x;
  const int64_t vectors = p.total_tokens * p.heads * kHeadDim / 8;
  for (int64_t i = cta * blockDim.x + threadIdx.x; i < vectors; i += ctas * blockDim.x)
    reinterpret_cast<uint4*>(p.out)[i] = nan4;
}

// Warp `token` of the CTA prepares that token's vectors (lane: channels 4l..4l+3).
__device__ __forceinline__ void prepare_token(const DecodeKernelParams& p, TokenStorage& ts, int token,
                                              int64_t row, int head, int vblock, int lane) {
  const int64_t base = (row * p.heads + head) * kHeadDim + 4 * lane;
  const float4 q = load_bf16x4(p.q, base);
  const float4 k = load_bf16x4(p.k, base);
  const float4 g = load_bf16x4(p.g, base);
  const float* bias_row = p.dt_bias + int64_t(head) * kHeadDim + 4 * lane;  // 4-byte aligned only
  const float4 bias = make_float4(bias_row[0], bias_row[1], bias_row[2], bias_row[3]);
  const float q_norm = warp_sum(q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w);
  const float k_norm = warp_sum(k.x * k.x + k.y * k.y + k.z * k.z + k.w * k.w);
  const float eps = float(kL2NormEps);
  const float q_scale = p.scale * rsqrtf(q_norm + eps);
  const float k_scale = rsqrtf(k_norm + eps);
  const float a = expf(p.A_log[head]);
  ts.q[token][lane] = make_float4(q.x * q_scale, q.y * q_scale, q.z * q_scale, q.w * q_scale);
  ts.k[token][lane] = make_float4(k.x * k_scale, k.y * k_scale, k.z * k_scale, k.w * k_scale);
  ts.decay[token][lane] = make_float4(exp2f(p.gate_scale * sigmoid(a * (g.x + bias.x))),
                                      exp2f(p.gate_scale * sigmoid(a * (g.y + bias.y))),
                                      exp2f(p.gate_scale * sigmoid(a * (g.z + bias.z))),
                                      exp2f(p.gate_scale * sigmoid(a * (g.w + bias.w))));
  if (lane == 0) ts.b[token] = sigmoid(load_bf16(p.beta, row * p.heads + head));
  ts.v[token][lane] = load_bf16(p.v, (row * p.heads + head) * kHeadDim + vblock * kRowsPerCta + lane);
}

template <StateType kState>
__global__ void __launch_bounds__(kThreads) kda_decode_kernel(const DecodeKernelParams p) {
  using Io = StateRowIo<kState>;
  static_assert(kRowsPerCta == 32, "prepare_token loads one v entry per lane");
  __shared__ TokenStorage ts;

  const int vblock = int(blockIdx.x % unsigned(kValueBlocks));
  const int64_t sequence = blockIdx.x / unsigned(kValueBlocks);
  const int head = int(blockIdx.y);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int row_local = tid / kLanesPerRow, sub = tid % kLanesPerRow;

  // 1. Status, slot, tokens.
  const int32_t status = *p.status;
  const int64_t slot = load_index(p.state_indices, p.indices_int64, sequence);
  int64_t begin, len;
  if (p.cu_seqlens != nullptr) {
    begin = load_index(p.cu_seqlens, p.cu_seqlens_int64, sequence);
    len = load_index(p.cu_seqlens, p.cu_seqlens_int64, sequence + 1) - begin;
  } else {
    begin = sequence * p.tokens;
    len = p.tokens;
  }
  if (status & (kDecodeStatusBadCuSeqlens | kDecodeStatusDuplicateIndex)) {
    poison_all_out(p);
    return;
  }
  // Unreachable after a passed check; never read or write out of bounds.
  if (begin < 0 || len < 1 || len > kMaxDecodeTokens || begin + len > p.total_tokens) return;
  if (slot < 0 || slot >= p.pool_size) {  // padding row: zeros; bad slot: NaN
    fill_out_rows(p, begin, int(len), head, vblock, slot < 0 ? 0.0f : __int_as_float(0x7fc00000));
    return;
  }

  // 2. This thread's part of its state row, in flight during the prologue.
  auto* row_ptr = static_cast<typename Io::Element*>(p.state) +
                  ((slot * p.heads + head) * kHeadDim + vblock * kRowsPerCta + row_local) * kHeadDim;
  float s[kValuesPerThread];
  Io::load(row_ptr, sub, s);

  // 3. Prologue: warp w prepares token w.
  if (warp < len) prepare_token(p, ts, warp, begin + warp, head, vblock, lane);
  __syncthreads();

  // 4. The recurrence, token by token, on registers.
  for (int i = 0; i < int(len); ++i) {
    float sk = 0.f;
#pragma unroll
    for (int j = 0; j < Io::kVectors; ++j)
#pragma unroll
      for (int c = 0; c < Io::kQuads; ++c) {
        const int quad = (j * kLanesPerRow + sub) * Io::kQuads + c;
        const float4 d = ts.decay[i][quad], k = ts.k[i][quad];
        float* x = &s[(j * Io::kQuads + c) * 4];
        x[0] *= d.x;
        x[1] *= d.y;
        x[2] *= d.z;
        x[3] *= d.w;
        sk += x[0] * k.x + x[1] * k.y + x[2] * k.z + x[3] * k.w;
      }
    sk = row_sum(sk);
    const float delta = ts.b[i] * (ts.v[i][row_local] - sk);
    float sq = 0.f;
#pragma unroll
    for (int j = 0; j < Io::kVectors; ++j)
#pragma unroll
      for (int c = 0; c < Io::kQuads; ++c) {
        const int quad = (j * kLanesPerRow + sub) * Io::kQuads + c;
        const float4 k = ts.k[i][quad], q = ts.q[i][quad];
        float* x = &s[(j * Io::kQuads + c) * 4];
        x[0] += delta * k.x;
        x[1] += delta * k.y;
        x[2] += delta * k.z;
        x[3] += delta * k.w;
        sq += x[0] * q.x + x[1] * q.y + x[2] * q.z + x[3] * q.w;
      }
    sq = row_sum(sq);
    if (sub == 0) ts.o[i][row_local] = sq;
  }

  // 5. Epilogue: state back in its dtype, outputs as bf16 (32 rows = 64 bytes per token).
  Io::store(row_ptr, sub, s);
  __syncthreads();
  if (tid < int(len) * kRowsPerCta) {
    const int i = tid / kRowsPerCta, r = tid % kRowsPerCta;
    const int64_t e = ((begin + i) * p.heads + head) * kHeadDim + vblock * kRowsPerCta + r;
    static_cast<bf16*>(p.out)[e] = __float2bfloat16_rn(ts.o[i][r]);
  }
}

template <StateType kState>
cudaError_t launch_decode(const DecodeKernelParams& params, cudaStream_t stream) {
  const dim3 grid(unsigned(params.num_sequences) * unsigned(kValueBlocks), unsigned(params.heads));
  kda_decode_kernel<kState><<<grid, kThreads, 0, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace flash_kda::decode_gpu
