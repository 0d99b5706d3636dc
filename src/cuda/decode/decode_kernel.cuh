// The decode kernel: one CTA per (sequence, head, block of kPasses x 32
// (fp32 pool) or kPasses x 64 (bf16 pool) value rows), kPasses = 2 when the
// grid still fills the SMs with it, else 1.
//
//   1. read the status word (or, N <= kFusedCheckMaxSequences, issue this CTA's own check of all
//      the indices: the fused path, no check kernel), the sequence's pool
//      slot and token range;
//   2. warp w < t issues token w's loads (all of them at once, before any
//      math), then one thread issues the bulk copies of this CTA's state rows
//      (contiguous in the pool) into shared memory, one per pass, each on its
//      own mbarrier;
//   3. meanwhile warp w prepares token w (t <= 8 warps): L2-normalised q
//      (times scale) and k, per-channel decay exp2(gate_scale * sigmoid(
//      exp(A_log) (g + dt_bias))), sigmoid(beta) and the v entries of these
//      rows, into shared memory;
//   4. per pass, once its copy landed: each thread reads its part of a row
//      into registers (fp32 pools 32 rows, 8 threads per 128-wide row; bf16
//      pools 64 rows, 4 threads per row), then per token: S *= decay;
//      S += b (v - S k) k^T; o = S q, with the two dot products (S k and S q,
//      before the rank-1 update: o = S_d q + delta (k . q)) reduced over the
//      row's lanes by shuffles; the rows go straight back to the pool in
//      their dtype (16-byte stores);
//   (fused path: the check's verdict is known after step 3; a poisoned call
//    or slot then skips 4 and 5 as on the two-kernel path)
//   5. store the outputs (bf16) of all the CTA's rows, coalesced.
//
// The work is memory-bound on the state (t = 1: 64 KiB read + written per
// fp32 head state against ~1.3 KiB of token data), so the kernel is built
// around the bytes in flight per SM. Loads into registers bound them by the
// registers a thread can hold until the data lands (4 CTAs x 16 KiB per SM);
// the copy engine writes shared memory instead, so with 2 passes a CTA has
// 32 KiB in flight from its first instructions, the prologue and pass 0
// overlapping the rest of the copy.
#pragma once

#include <atomic>

#include "cuda/decode/decode_device_utils.cuh"

namespace flash_kda::decode_gpu {

// How a thread's kValuesPerThread values of a state row lie in the row
// (shared-memory copy and pool alike): kVectors 16-byte vectors of kQuads * 4
// columns; vector j of thread `sub` starts at column (j * kLanesPerRow + sub)
// * kQuads * 4, so the threads of a row touch contiguous bytes (fp32: 8 x 16
// = 128, bf16: 4 x 16 = 64) per instruction: conflict-free shared-memory
// reads, whole sectors in the global stores.
template <StateType kState>
struct StateRowIo;

template <>
struct StateRowIo<StateType::kFloat32> : Fp32Layout {
  // 4 x 256 threads at <= 64 registers; with 2 passes 4 x 32 KiB of state in
  // flight per SM (4 x ~49 KiB of shared memory).
  static constexpr int kMinCtasPerSm = 4;
  static constexpr int kQuads = 1;    // 4 floats per 16-byte vector
  static constexpr int kVectors = 4;
  using Element = float;
  // A quarter-warp (8 lanes) is one row: 128 contiguous bytes, all banks once.
  __device__ __forceinline__ static void read(const float* row, int sub, int /*row_local*/,
                                              float (&s)[kValuesPerThread]) {
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
struct StateRowIo<StateType::kBFloat16> : Bf16Layout {
  // 3 x 256 threads at <= 80 registers (unbounded ptxas takes more and
  // spills at 64); with 2 passes 3 x 32 KiB of state in flight per SM. No
  // spills at 80 needs the recurrence's shape (o = S_d q + delta (q . k):
  // q is not held across the reduction).
  static constexpr int kMinCtasPerSm = 3;
  static constexpr int kQuads = 2;    // 8 bf16 per 16-byte vector
  static constexpr int kVectors = 4;
  using Element = bf16;
  // A quarter-warp is rows 2m and 2m + 1, 256 bytes (0 mod 128) apart, so the
  // same vector of both would hit the same banks: the odd row reads its
  // vectors in the order j ^ 1 (the two rows then fill opposite halves of the
  // banks) and selects put them back in column order.
  __device__ __forceinline__ static void read(const bf16* row, int sub, int row_local,
                                              float (&s)[kValuesPerThread]) {
    const int odd = row_local & 1;
    // (j ^ odd) * kLanesPerRow = j * kLanesPerRow +- odd * kLanesPerRow: two
    // base addresses and immediate offsets.
    const uint4* vectors = reinterpret_cast<const uint4*>(row) + sub;
    const int swap = odd * kLanesPerRow;
    uint4 raw[kVectors];
#pragma unroll
    for (int j = 0; j < kVectors; ++j) raw[j] = vectors[j * kLanesPerRow + (j % 2 == 0 ? swap : -swap)];
#pragma unroll
    for (int j = 0; j < kVectors; ++j) {
      const uint4 x = odd ? raw[j ^ 1] : raw[j];
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
template <int kCtaRows>
struct TokenStorage {
  float4 q[kMaxDecodeTokens][kHeadDim / 4];      // scale * q / ||q||
  float4 k[kMaxDecodeTokens][kHeadDim / 4];      // k / ||k||
  float4 decay[kMaxDecodeTokens][kHeadDim / 4];  // exp(gate), per key channel
  float b[kMaxDecodeTokens];                     // sigmoid(beta)
  float qk[kMaxDecodeTokens];                    // (scale * q / ||q||) . (k / ||k||)
  float v[kMaxDecodeTokens][kCtaRows];           // v entries of this CTA's rows
  float o[kMaxDecodeTokens][kCtaRows];           // outputs of this CTA's rows
};

// Fills `value` into this CTA's rows of out for tokens [begin, begin + len).
template <int kCtaRows>
__device__ __forceinline__ void fill_out_rows(const DecodeKernelParams& p, int64_t begin, int len,
                                              int head, int vblock, float value) {
  for (int x = threadIdx.x; x < len * kCtaRows; x += kThreads) {
    const int64_t token = begin + x / kCtaRows;
    const int64_t e = (token * p.heads + head) * kHeadDim + vblock * kCtaRows + x % kCtaRows;
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

// Warp `token` of the CTA prepares that token's vectors (lane: channels
// 4l..4l+3) in two steps: load_token issues every global load the token
// needs, prepare_token (after the caller has issued the state copy) does the
// math. Written in the order of use, the compiler kept A_log's, beta's and v's
// loads behind the norms' shuffles and the shared stores (a generic pointer
// may alias shared memory): the prologue took four memory round trips, the
// longest chain of a small call (issue #6, session 13).
template <int kCtaRows>
struct TokenLoads {
  uint2 q, k, g;  // 4 bf16 each
  float4 bias;
  float a_log, beta;
  float v[kCtaRows / 32];
};

template <int kCtaRows>
__device__ __forceinline__ TokenLoads<kCtaRows> load_token(const DecodeKernelParams& p, int64_t row, int head,
                                                           int vblock, int lane) {
  TokenLoads<kCtaRows> t;
  const int64_t base = (row * p.heads + head) * kHeadDim + 4 * lane;
  t.q = *reinterpret_cast<const uint2*>(static_cast<const bf16*>(p.q) + base);
  t.k = *reinterpret_cast<const uint2*>(static_cast<const bf16*>(p.k) + base);
  t.g = *reinterpret_cast<const uint2*>(static_cast<const bf16*>(p.g) + base);
  const float* bias_row = p.dt_bias + int64_t(head) * kHeadDim + 4 * lane;  // 4-byte aligned only
  t.bias = make_float4(bias_row[0], bias_row[1], bias_row[2], bias_row[3]);
  t.a_log = p.A_log[head];
  t.beta = load_bf16(p.beta, row * p.heads + head);
#pragma unroll
  for (int j = 0; j < kCtaRows / 32; ++j)
    t.v[j] = load_bf16(p.v, (row * p.heads + head) * kHeadDim + vblock * kCtaRows + lane + 32 * j);
  return t;
}

template <int kCtaRows>
__device__ __forceinline__ void prepare_token(const DecodeKernelParams& p, const TokenLoads<kCtaRows>& t,
                                              TokenStorage<kCtaRows>& ts, int token, int lane) {
  const float4 q = unpack_bf16x4(t.q), k = unpack_bf16x4(t.k), g = unpack_bf16x4(t.g);
  const float4 bias = t.bias;
  const float q_norm = warp_sum(q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w);
  const float k_norm = warp_sum(k.x * k.x + k.y * k.y + k.z * k.z + k.w * k.w);
  const float eps = float(kL2NormEps);
  const float q_scale = p.scale * rsqrtf(q_norm + eps);
  const float k_scale = rsqrtf(k_norm + eps);
  const float a = expf(t.a_log);
  ts.q[token][lane] = make_float4(q.x * q_scale, q.y * q_scale, q.z * q_scale, q.w * q_scale);
  ts.k[token][lane] = make_float4(k.x * k_scale, k.y * k_scale, k.z * k_scale, k.w * k_scale);
  ts.decay[token][lane] = make_float4(exp2f(p.gate_scale * sigmoid(a * (g.x + bias.x))),
                                      exp2f(p.gate_scale * sigmoid(a * (g.y + bias.y))),
                                      exp2f(p.gate_scale * sigmoid(a * (g.z + bias.z))),
                                      exp2f(p.gate_scale * sigmoid(a * (g.w + bias.w))));
  const float qk = warp_sum(q.x * k.x + q.y * k.y + q.z * k.z + q.w * k.w) * (q_scale * k_scale);
  if (lane == 0) {
    ts.b[token] = sigmoid(t.beta);
    ts.qk[token] = qk;
  }
#pragma unroll
  for (int j = 0; j < kCtaRows / 32; ++j) ts.v[token][lane + 32 * j] = t.v[j];
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

// The recurrence over the sequence's tokens on one state row, this thread's
// kValuesPerThread values of it in registers; token i's output of the row
// goes to ts.o[i][row].
// With S_d = decayed S: o = q S_new = q S_d + delta (q . k), so the output's
// dot product joins the first pass (both reductions in one round of
// shuffles) and the second pass only adds delta k: q is never held across
// the reduction (the 32-value bf16 layout would otherwise spill).
template <class Io, int kCtaRows>
__device__ __forceinline__ void update_row(TokenStorage<kCtaRows>& ts, int len, int row, int sub,
                                           float (&s)[Io::kValuesPerThread]) {
  constexpr int kLanesPerRow = Io::kLanesPerRow;
  for (int i = 0; i < len; ++i) {
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
    const float delta = ts.b[i] * (ts.v[i][row] - sk);
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
    // The row's lanes hold bitwise-equal sums (each butterfly step adds the
    // same two values in either order), so all of them store the output: no
    // lane predicate held across the loop (the fp32 kernels would spill at 64
    // registers).
    ts.o[i][row] = sq + delta * ts.qk[i];
  }
}

// Bytes of one pass's state rows (one bulk copy); of all passes: the
// kernel's dynamic shared memory.
template <StateType kState>
inline constexpr uint32_t kPassBytes =
    uint32_t(StateRowIo<kState>::kRowsPerPass * kHeadDim * sizeof(typename StateRowIo<kState>::Element));

template <StateType kState, int kPasses>
__global__ void __launch_bounds__(kThreads, StateRowIo<kState>::kMinCtasPerSm)
    kda_decode_kernel(const DecodeKernelParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using Io = StateRowIo<kState>;
  using Element = typename Io::Element;
  constexpr int kRowsPerPass = Io::kRowsPerPass, kLanesPerRow = Io::kLanesPerRow;
  constexpr int kCtaRows = kPasses * kRowsPerPass;
  constexpr int kBlocks = kValueBlocks<Io, kPasses>;
  static_assert(Io::kVectors * Io::kQuads * 4 == Io::kValuesPerThread, "a thread's values, all read");
  static_assert(kRowsPerPass % 32 == 0, "prepare_token loads whole warps of v entries");
  static_assert(kPassBytes<kState> % 16 == 0, "bulk copies move multiples of 16 bytes");
  __shared__ TokenStorage<kCtaRows> ts;
  __shared__ CheckStorage cs;
  __shared__ uint64_t state_full[kPasses];  // pass i's bulk copy landed
  extern __shared__ __align__(128) unsigned char state_bytes[];
  auto* state_rows = reinterpret_cast<Element*>(state_bytes);  // [kCtaRows][kHeadDim]

  const int vblock = int(blockIdx.x % unsigned(kBlocks));
  const int64_t sequence = blockIdx.x / unsigned(kBlocks);
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
  // Barriers set up while the index loads are in flight. The CTA barrier
  // after the init orders it before any use, as the forward kernel does
  // (without it racecheck reported init / arrive_expect_tx hazards).
  if (tid == 0) {
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) mbarrier_init(&state_full[pass], 1);
    fence_barrier_init();
  }
  __syncthreads();
  // This CTA's own token range and slot, checked locally so that the copies
  // and loads below stay in bounds whatever the call-wide verdict turns out to be.
  const bool tokens_ok = begin >= 0 && len >= 1 && len <= kMaxDecodeTokens && begin + len <= p.total_tokens;
  const bool runnable = tokens_ok && slot >= 0 && slot < p.pool_size;

  // 2. This CTA's state rows into shared memory, one bulk copy per pass, in
  // flight during the prologue and the check. Issued iff runnable: every
  // path of a runnable CTA waits for them before it exits. The token loads
  // go first (they need no slot), and the last warp issues the copies: warp 0
  // always prepares a token, and its math should not wait for the slot.
  TokenLoads<kCtaRows> token_loads;
  if (tokens_ok && warp < len) token_loads = load_token<kCtaRows>(p, begin + warp, head, vblock, lane);
  Element* cta_rows = static_cast<Element*>(p.state) +
                      ((slot * p.heads + head) * kHeadDim + vblock * kCtaRows) * kHeadDim;
  if (runnable && tid == kThreads - 32) {
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      mbarrier_arrive_expect_tx(&state_full[pass], kPassBytes<kState>);
      bulk_copy_to_shared(state_rows + pass * kRowsPerPass * kHeadDim, cta_rows + pass * kRowsPerPass * kHeadDim,
                          kPassBytes<kState>, &state_full[pass]);
    }
  }

  // 3. Prologue: warp w prepares token w (its loads were issued above).
  if (tokens_ok && warp < len) prepare_token(p, token_loads, ts, warp, lane);
  if (p.fused_check) {
    status = check_finish(p, cs, check);  // also the prologue's barrier
    // Callers may read the status word: the same verdict as the check kernel's.
    if (blockIdx.x == 0 && blockIdx.y == 0 && tid == 0) *p.status = status;
  } else {
    __syncthreads();
  }

  if (status & (kDecodeStatusBadCuSeqlens | kDecodeStatusDuplicateIndex)) {
    poison_all_out(p);
    // No copy may still be writing this CTA's shared memory once it exits.
    if (runnable)
#pragma unroll
      for (int pass = 0; pass < kPasses; ++pass) mbarrier_wait(&state_full[pass], 0);
    return;
  }
  // Unreachable after a passed check; never read or write out of bounds.
  if (!tokens_ok) return;
  if (!runnable) {  // padding row: zeros; bad slot: NaN
    fill_out_rows<kCtaRows>(p, begin, int(len), head, vblock,
                            slot < 0 ? 0.0f : __int_as_float(0x7fc00000));
    return;
  }

  // 4. Per pass, as soon as its rows landed: the recurrence on registers,
  // then the rows straight back to the pool in their dtype.
#pragma unroll 1
  for (int pass = 0; pass < kPasses; ++pass) {
    const int row = pass * kRowsPerPass + row_local;
    mbarrier_wait(&state_full[pass], 0);
    float s[Io::kValuesPerThread];
    Io::read(state_rows + row * kHeadDim, sub, row_local, s);
    update_row<Io>(ts, int(len), row, sub, s);
    Io::store(cta_rows + row * kHeadDim, sub, s);
  }

  // 5. Epilogue: the outputs as bf16 (2 bytes per row and token).
  __syncthreads();
  for (int x = tid; x < int(len) * kCtaRows; x += kThreads) {
    const int i = x / kCtaRows, r = x % kCtaRows;
    const int64_t e = ((begin + i) * p.heads + head) * kHeadDim + vblock * kCtaRows + r;
    static_cast<bf16*>(p.out)[e] = __float2bfloat16_rn(ts.o[i][r]);
  }
#endif
}

// Launches kda_decode_kernel<kState, kPasses>; the first launch on a device
// allows the kernel its dynamic shared memory (static + dynamic > 48 KiB).
template <StateType kState, int kPasses>
cudaError_t launch_passes(const DecodeKernelParams& params, int device, cudaStream_t stream) {
  constexpr int kSmemBytes = int(kPasses * kPassBytes<kState>);
  auto* kernel = kda_decode_kernel<kState, kPasses>;
  static std::atomic<uint64_t> configured{0};  // bit d: device d done
  const uint64_t bit = device >= 0 && device < 64 ? uint64_t(1) << device : 0;
  if (bit == 0 || (configured.load(std::memory_order_acquire) & bit) == 0) {
    const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
    if (err != cudaSuccess) return err;
    configured.fetch_or(bit, std::memory_order_release);
  }
  const dim3 grid(unsigned(params.num_sequences) * unsigned(kValueBlocks<StateRowIo<kState>, kPasses>),
                  unsigned(params.heads));
  kernel<<<grid, kThreads, kSmemBytes, stream>>>(params);
  return cudaGetLastError();
}

template <StateType kState>
cudaError_t launch_decode(const DecodeKernelParams& params, int device, int sm_count, cudaStream_t stream) {
  const int64_t two_pass_ctas =
      params.num_sequences * kValueBlocks<StateRowIo<kState>, 2> * int64_t(params.heads);
  return two_pass_ctas >= int64_t(kTwoPassMinCtasPerSm) * sm_count ? launch_passes<kState, 2>(params, device, stream)
                                                                   : launch_passes<kState, 1>(params, device, stream);
}

}  // namespace flash_kda::decode_gpu
