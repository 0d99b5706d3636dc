// Context parallelism, the sequential step between the two parallel passes
// (cuda_backend.cpp's plan): with R_j the state a segment j reaches from a
// zero start (from the real initial state for j = 0) and M_j its transition
// matrix (the state it reaches from the identity with v = 0), the state at
// the start of segment j + 1 is
//
//   S_{j+1} = S_j · M_j + R_j          (S: 128 value rows x 128 keys, fp32)
//
// Rows of S are independent, so one CTA per (sequence, head, 16 rows) carries
// its rows through all segments without synchronising with other CTAs.
// Slots (fp32 [N * P, H, 128, 128], n-major): states[n * P + j] holds R_{j-1}
// before and S_j after; transitions[n * P + j] holds M_{j-1}. states[n * P + 1]
// = R_0 is already S_1, so the updates run for j = 1 .. P - 2.
#include "cuda/sm90/fwd_launch.h"
#include "common/constants.h"

namespace flash_kda::sm90 {
namespace {

constexpr int kDim = kHeadDim;
constexpr int kRows = 16;                  // value rows per CTA
constexpr int kThreads = 256;              // 16 rows x 16 threads, 8 columns each
constexpr int kCols = kDim * kRows / kThreads;
constexpr int kKeysPerStage = 32;          // rows of M staged in shared memory at a time

__global__ void __launch_bounds__(kThreads) segment_combine_kernel(float* states, const float* transitions,
                                                                   int heads, int segments) {
  __shared__ __align__(16) float s_rows[kRows][kDim];
  __shared__ __align__(16) float m_rows[kKeysPerStage][kDim];
  const int n = blockIdx.x / heads, head = blockIdx.x % heads;
  const int r = threadIdx.x / (kDim / kCols), c0 = (threadIdx.x % (kDim / kCols)) * kCols;
  const int64_t head_elems = int64_t(kDim) * kDim;
  auto slot = [&](int j) { return ((int64_t(n) * segments + j) * heads + head) * head_elems; };
  const int64_t my_row = int64_t(blockIdx.y * kRows + r) * kDim + c0;

  // S_1 = R_0: this thread's 8 values
  float4 lo = *reinterpret_cast<const float4*>(states + slot(1) + my_row);
  float4 hi = *reinterpret_cast<const float4*>(states + slot(1) + my_row + 4);
  for (int j = 1; j + 1 < segments; ++j) {
    *reinterpret_cast<float4*>(&s_rows[r][c0]) = lo;
    *reinterpret_cast<float4*>(&s_rows[r][c0 + 4]) = hi;
    float* next = states + slot(j + 1);
    const float* m = transitions + slot(j + 1);
    float acc[kCols];
    {
      const float4 a = *reinterpret_cast<const float4*>(next + my_row);
      const float4 b = *reinterpret_cast<const float4*>(next + my_row + 4);
      acc[0] = a.x; acc[1] = a.y; acc[2] = a.z; acc[3] = a.w;
      acc[4] = b.x; acc[5] = b.y; acc[6] = b.z; acc[7] = b.w;
    }
    for (int k0 = 0; k0 < kDim; k0 += kKeysPerStage) {
      __syncthreads();  // s_rows written / m_rows of the previous stage read
      for (int i = threadIdx.x; i < kKeysPerStage * kDim / 4; i += kThreads)
        reinterpret_cast<float4*>(&m_rows[0][0])[i] =
            reinterpret_cast<const float4*>(m + int64_t(k0) * kDim)[i];
      __syncthreads();
#pragma unroll 8
      for (int k = 0; k < kKeysPerStage; ++k) {
        const float s = s_rows[r][k0 + k];
        const float4 ma = *reinterpret_cast<const float4*>(&m_rows[k][c0]);
        const float4 mb = *reinterpret_cast<const float4*>(&m_rows[k][c0 + 4]);
        acc[0] = fmaf(s, ma.x, acc[0]); acc[1] = fmaf(s, ma.y, acc[1]);
        acc[2] = fmaf(s, ma.z, acc[2]); acc[3] = fmaf(s, ma.w, acc[3]);
        acc[4] = fmaf(s, mb.x, acc[4]); acc[5] = fmaf(s, mb.y, acc[5]);
        acc[6] = fmaf(s, mb.z, acc[6]); acc[7] = fmaf(s, mb.w, acc[7]);
      }
    }
    lo = make_float4(acc[0], acc[1], acc[2], acc[3]);
    hi = make_float4(acc[4], acc[5], acc[6], acc[7]);
    *reinterpret_cast<float4*>(next + my_row) = lo;
    *reinterpret_cast<float4*>(next + my_row + 4) = hi;
    __syncthreads();  // every thread has read s_rows before the next step overwrites it
  }
}

}  // namespace

cudaError_t launch_segment_combine(float* states, const float* transitions, int64_t sequences, int heads,
                                   int segments, cudaStream_t stream) {
  if (segments < 3 || sequences == 0 || heads == 0) return cudaSuccess;  // S_1 = R_0 needs no step
  const dim3 grid(unsigned(sequences * heads), kDim / kRows);
  segment_combine_kernel<<<grid, kThreads, 0, stream>>>(states, transitions, heads, segments);
  return cudaGetLastError();
}

}  // namespace flash_kda::sm90
