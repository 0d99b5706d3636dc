// The decode kernel: one CTA per (sequence, head, block of 32 (fp32 pool) or
// 64 (bf16 pool) value rows).
//
//   1. read the status word (or, N <= kFusedCheckMaxSequences, issue this CTA's own check of all
//      the indices: the fused path, no check kernel), the sequence's pool
//      slot and token range;
//   2. issue the loads of this CTA's state rows into registers (fp32):
//      fp32 pools 32 rows, 8 threads per 128-wide row; bf16 pools 64 rows,
//      4 threads per row; either way 4 16-byte vectors per thread;
//   3. meanwhile warp w prepares token w (t <= 8 warps): L2-normalised q
//      (times scale) and k, per-channel decay exp2(gate_scale * sigmoid(
//      exp(A_log) (g + dt_bias))), sigmoid(beta) and the v entries of these
//      rows, into shared memory;
//   4. per token, per row: S *= decay; S += b (v - S k) k^T; o = S q, with
//      the two dot products (S k and S q, before the rank-1 update: o = S_d q
//      + delta (k . q)) reduced over the row's lanes by shuffles;
//   (fused path: the check's verdict is known after step 3; a poisoned call
//    or slot then skips 4 and 5 as on the two-kernel path)
//   5. store the state rows back in their dtype and the outputs (bf16).
//
// The work is memory-bound on the state (t = 1: 64 KiB read + written per
// fp32 head state against ~1.3 KiB of token data), so the kernel is built
// around keeping many 16-byte state loads in flight per SM: few registers,
// no shared-memory staging of the state, the prologue overlapping the loads.
#pragma once

#include "cuda/decode/decode_device_utils.cuh"

namespace flash_kda::decode_gpu {

// How a thread's kValuesPerThread values of a state row are stored in
// memory: kVectors 16-byte vectors of kQuads * 4 columns; vector j of thread
// `sub` starts at column (j * kLanesPerRow + sub) * kQuads * 4, so the threads
// of a row read contiguous bytes (fp32: 8 x 16 = 128, bf16: 4 x 16 = 64) per
// instruction.
template <StateType kState>
struct StateRowIo;

template <>
struct StateRowIo<StateType::kFloat32> : Fp32Layout {
  // 4 x 256 threads at <= 64 registers: 1024 x 64 bytes of loads in flight per SM.
  static constexpr int kMinCtasPerSm = 4;
  static constexpr int kQuads = 1;    // 4 floats per 16-byte vector
  static constexpr int kVectors = 4;
  using Element = float;
  // load: the raw 16-byte vectors (issued early, held across the prologue);
  // unpack: to the fp32 values the recurrence works on.
  using Raw = float4;
  __device__ __forceinline__ static void load(const float* row, int sub, Raw (&raw)[kVectors]) {
#pragma unroll
    for (int j = 0; j < kVectors; ++j) raw[j] = reinterpret_cast<const float4*>(row)[j * kLanesPerRow + sub];
  }
  __device__ __forceinline__ static void unpack(const Raw (&raw)[kVectors], float (&s)[kValuesPerThread]) {
#pragma unroll
    for (int j = 0; j < kVectors; ++j) {
      s[4 * j] = raw[j].x;
      s[4 * j + 1] = raw[j].y;
      s[4 * j + 2] = raw[j].z;
      s[4 * j + 3] = raw[j].w;
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
struct StateRowIo<StateType::kBFloat16> : Bf16Layout {
  // 3 x 256 threads at <= 80 registers (unbounded ptxas takes ~116, 2 CTAs
  // per SM; 64 spills): 768 x 64 bytes in flight per SM, 1.5x the 8-lane
  // layout's 1024 x 32. No spills at 80 needs the recurrence's shape below
  // (o = S_d q + delta (q . k), k reloaded in the second pass).
  static constexpr int kMinCtasPerSm = 3;
  static constexpr int kQuads = 2;    // 8 bf16 per 16-byte vector
  static constexpr int kVectors = 4;
  using Element = bf16;
  using Raw = uint4;
  __device__ __forceinline__ static void load(const bf16* row, int sub, Raw (&raw)[kVectors]) {
#pragma unroll
    for (int j = 0; j < kVectors; ++j) raw[j] = reinterpret_cast<const uint4*>(row)[j * kLanesPerRow + sub];
  }
  __device__ __forceinline__ static void unpack(const Raw (&raw)[kVectors], float (&s)[kValuesPerThread]) {
#pragma unroll
    for (int j = 0; j < kVectors; ++j) {
      const uint32_t w[4] = {raw[j].x, raw[j].y, raw[j].z, raw[j].w};
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


// A 16-byte shared-memory load (asm volatile: not merged with or hoisted
// above the earlier loads of the same vector by the compiler).
__device__ __forceinline__ float4 lds_f32x4(const float4* ptr) {
  float4 r;
  asm volatile("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4];"
               : "=f"(r.x), "=f"(r.y), "=f"(r.z), "=f"(r.w)
               : "r"(static_cast<unsigned>(__cvta_generic_to_shared(ptr))));
  return r;
}

// Per-token vectors of the CTA's (sequence, head), prepared by the prologue.
template <int kRowsPerCta>
struct TokenStorage {
  float4 q[kMaxDecodeTokens][kHeadDim / 4];      // scale * q / ||q||
  float4 k[kMaxDecodeTokens][kHeadDim / 4];      // k / ||k||
  float4 decay[kMaxDecodeTokens][kHeadDim / 4];  // exp(gate), per key channel
  float b[kMaxDecodeTokens];                     // sigmoid(beta)
  float qk[kMaxDecodeTokens];                    // (scale * q / ||q||) . (k / ||k||)
  float v[kMaxDecodeTokens][kRowsPerCta];        // v entries of this CTA's rows
  float o[kMaxDecodeTokens][kRowsPerCta];        // outputs of this CTA's rows
};

// Fills `value` into this CTA's rows of out for tokens [begin, begin + len).
template <int kRowsPerCta>
__device__ __forceinline__ void fill_out_rows(const DecodeKernelParams& p, int64_t begin, int len,
                                              int head, int vblock, float value) {
  for (int x = threadIdx.x; x < len * kRowsPerCta; x += kThreads) {
    const int64_t token = begin + x / kRowsPerCta;
    const int64_t e = (token * p.heads + head) * kHeadDim + vblock * kRowsPerCta + x % kRowsPerCta;
    static_cast<bf16*>(p.out)[e] = __float2bfloat16_rn(value);
  }
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
template <int kRowsPerCta>
__device__ __forceinline__ void prepare_token(const DecodeKernelParams& p, TokenStorage<kRowsPerCta>& ts, int token,
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
  const float qk = warp_sum(q.x * k.x + q.y * k.y + q.z * k.z + q.w * k.w) * (q_scale * k_scale);
  if (lane == 0) {
    ts.b[token] = sigmoid(load_bf16(p.beta, row * p.heads + head));
    ts.qk[token] = qk;
  }
#pragma unroll
  for (int r = lane; r < kRowsPerCta; r += 32)
    ts.v[token][r] = load_bf16(p.v, (row * p.heads + head) * kHeadDim + vblock * kRowsPerCta + r);
}

// The fused path's check (p.fused_check, N <= kFusedCheckMaxSequences): every
// CTA runs the whole of decode_check.cu's check itself, on the same data, so
// all CTAs reach the same verdict without talking to each other.
// check_loads issues the global loads (thread i: state_indices[i], cu_seqlens
// [i] and [i - 1]); check_finish (all threads; two __syncthreads) evaluates
// them: range checks, then the all-pairs duplicate check from shared memory.
struct CheckLoads {
  int64_t slot = 0, here = 0, previous = 0;
};

struct CheckStorage {
  int64_t slots[kFusedCheckMaxSequences];
  int bits;
};

__device__ __forceinline__ CheckLoads check_loads(const DecodeKernelParams& p) {
  const int tid = threadIdx.x, n = int(p.num_sequences);
  CheckLoads c;
  if (tid < n) c.slot = load_index(p.state_indices, p.indices_int64, tid);
  if (p.cu_seqlens != nullptr && tid <= n) {
    c.here = load_index(p.cu_seqlens, p.cu_seqlens_int64, tid);
    if (tid > 0) c.previous = load_index(p.cu_seqlens, p.cu_seqlens_int64, tid - 1);
  }
  return c;
}

__device__ __forceinline__ int32_t check_finish(const DecodeKernelParams& p, CheckStorage& cs,
                                                const CheckLoads& c) {
  static_assert(kThreads % kFusedCheckMaxSequences == 0 && kThreads > kFusedCheckMaxSequences,
                "one thread per index and per cu_seqlens entry; whole groups per duplicate row");
  const int tid = threadIdx.x, n = int(p.num_sequences);
  int mine = 0;
  if (tid == 0) cs.bits = 0;
  if (tid < n) {
    cs.slots[tid] = c.slot;
    if (c.slot >= p.pool_size) mine |= kDecodeStatusIndexOutOfRange;
  }
  if (p.cu_seqlens != nullptr && tid <= n) {
    bool ok;
    if (tid == 0) {
      ok = c.here == 0;
    } else {
      const int64_t len = c.here - c.previous;
      ok = len >= 1 && len <= kMaxDecodeTokens;
    }
    if (tid == n && c.here != p.total_tokens) ok = false;
    if (!ok) mine |= kDecodeStatusBadCuSeqlens;
  }
  __syncthreads();
  // Entry i against j = i + 1 + g, i + 1 + g + G, ... (G = kThreads / 64 groups):
  // at most ceil(63 / 4) = 16 compares per thread.
  constexpr int kGroups = kThreads / kFusedCheckMaxSequences;
  const int i = tid % kFusedCheckMaxSequences;
  if (i < n) {
    const int64_t slot = cs.slots[i];
    if (slot >= 0 && slot < p.pool_size)
      for (int j = i + 1 + tid / kFusedCheckMaxSequences; j < n; j += kGroups)
        if (cs.slots[j] == slot) {
          mine |= kDecodeStatusDuplicateIndex;
          break;
        }
  }
  if (mine != 0) atomicOr(&cs.bits, mine);
  __syncthreads();
  return cs.bits;
}

template <StateType kState>
__global__ void __launch_bounds__(kThreads, StateRowIo<kState>::kMinCtasPerSm)
    kda_decode_kernel(const DecodeKernelParams p) {
  using Io = StateRowIo<kState>;
  constexpr int kRowsPerCta = Io::kRowsPerCta, kLanesPerRow = Io::kLanesPerRow;
  constexpr int kValueBlocks = Io::kValueBlocks;
  static_assert(Io::kVectors * Io::kQuads * 4 == Io::kValuesPerThread, "a thread's values, all loaded");
  static_assert(kRowsPerCta % 32 == 0, "prepare_token loads whole warps of v entries");
  __shared__ TokenStorage<kRowsPerCta> ts;
  __shared__ CheckStorage cs;

  const int vblock = int(blockIdx.x % unsigned(kValueBlocks));
  const int64_t sequence = blockIdx.x / unsigned(kValueBlocks);
  const int head = int(blockIdx.y);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int row_local = tid / kLanesPerRow, sub = tid % kLanesPerRow;

  // 1. Status (two-kernel path) or the check's loads (fused path), slot, tokens.
  int32_t status = 0;
  CheckLoads check;
  if (p.fused_check)
    check = check_loads(p);
  else
    status = *p.status;
  const int64_t slot = load_index(p.state_indices, p.indices_int64, sequence);
  int64_t begin, len;
  if (p.cu_seqlens != nullptr) {
    begin = load_index(p.cu_seqlens, p.cu_seqlens_int64, sequence);
    len = load_index(p.cu_seqlens, p.cu_seqlens_int64, sequence + 1) - begin;
  } else {
    begin = sequence * p.tokens;
    len = p.tokens;
  }
  // This CTA's own token range and slot, checked locally so that the loads
  // below stay in bounds whatever the call-wide verdict turns out to be.
  const bool tokens_ok = begin >= 0 && len >= 1 && len <= kMaxDecodeTokens && begin + len <= p.total_tokens;
  const bool runnable = tokens_ok && slot >= 0 && slot < p.pool_size;

  // 2. This thread's part of its state row, in flight during the prologue and the check.
  auto* row_ptr = static_cast<typename Io::Element*>(p.state) +
                  ((slot * p.heads + head) * kHeadDim + vblock * kRowsPerCta + row_local) * kHeadDim;
  typename Io::Raw raw[Io::kVectors];
  if (runnable) Io::load(row_ptr, sub, raw);

  // 3. Prologue: warp w prepares token w.
  if (runnable && warp < len) prepare_token(p, ts, warp, begin + warp, head, vblock, lane);
  if (p.fused_check) {
    status = check_finish(p, cs, check);  // also the prologue's barrier
    // Callers may read the status word: the same verdict as the check kernel's.
    if (blockIdx.x == 0 && blockIdx.y == 0 && tid == 0) *p.status = status;
  } else {
    __syncthreads();
  }

  if (status & (kDecodeStatusBadCuSeqlens | kDecodeStatusDuplicateIndex)) {
    poison_all_out(p);
    return;
  }
  // Unreachable after a passed check; never read or write out of bounds.
  if (!tokens_ok) return;
  if (!runnable) {  // padding row: zeros; bad slot: NaN
    fill_out_rows<kRowsPerCta>(p, begin, int(len), head, vblock,
                               slot < 0 ? 0.0f : __int_as_float(0x7fc00000));
    return;
  }

  float s[Io::kValuesPerThread];
  Io::unpack(raw, s);

  // 4. The recurrence, token by token, on registers.
  // With S_d = decayed S: o = q S_new = q S_d + delta (q . k), so the output's
  // dot product joins the first pass (both reductions in one round of
  // shuffles) and the second pass only adds delta k: q is never held across
  // the reduction (the 32-value bf16 layout would otherwise spill).
  for (int i = 0; i < int(len); ++i) {
    float sk = 0.f, sq = 0.f;
#pragma unroll
    for (int j = 0; j < Io::kVectors; ++j)
#pragma unroll
      for (int c = 0; c < Io::kQuads; ++c) {
        const int quad = (j * kLanesPerRow + sub) * Io::kQuads + c;
        const float4 d = ts.decay[i][quad], k = ts.k[i][quad], q = ts.q[i][quad];
        float* x = &s[(j * Io::kQuads + c) * 4];
        x[0] *= d.x;
        x[1] *= d.y;
        x[2] *= d.z;
        x[3] *= d.w;
        sk += x[0] * k.x + x[1] * k.y + x[2] * k.z + x[3] * k.w;
        sq += x[0] * q.x + x[1] * q.y + x[2] * q.z + x[3] * q.w;
      }
    sk = row_sum<kLanesPerRow>(sk);
    sq = row_sum<kLanesPerRow>(sq);
    const float delta = ts.b[i] * (ts.v[i][row_local] - sk);
#pragma unroll
    for (int j = 0; j < Io::kVectors; ++j)
#pragma unroll
      for (int c = 0; c < Io::kQuads; ++c) {
        const int quad = (j * kLanesPerRow + sub) * Io::kQuads + c;
        float4 k;
        if constexpr (Io::kValuesPerThread > 16) {
          k = lds_f32x4(&ts.k[i][quad]);
        } else {
          k = ts.k[i][quad];
        }
        float* x = &s[(j * Io::kQuads + c) * 4];
        x[0] += delta * k.x;
        x[1] += delta * k.y;
        x[2] += delta * k.z;
        x[3] += delta * k.w;
      }
    if (sub == 0) ts.o[i][row_local] = sq + delta * ts.qk[i];
  }

  // 5. Epilogue: state back in its dtype, outputs as bf16 (2 bytes per row and token).
  Io::store(row_ptr, sub, s);
  __syncthreads();
  for (int x = tid; x < int(len) * kRowsPerCta; x += kThreads) {
    const int i = x / kRowsPerCta, r = x % kRowsPerCta;
    const int64_t e = ((begin + i) * p.heads + head) * kHeadDim + vblock * kRowsPerCta + r;
    static_cast<bf16*>(p.out)[e] = __float2bfloat16_rn(ts.o[i][r]);
  }
}

template <StateType kState>
cudaError_t launch_decode(const DecodeKernelParams& params, cudaStream_t stream) {
  const dim3 grid(unsigned(params.num_sequences) * unsigned(StateRowIo<kState>::kValueBlocks),
                  unsigned(params.heads));
  kda_decode_kernel<kState><<<grid, kThreads, 0, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace flash_kda::decode_gpu
