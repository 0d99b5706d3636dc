// How fast an SM's stores leave it (issue #7: the checkpoint kernel's 64 KiB
// per CTA cost ~3.3k cycles however they were issued). A standalone probe,
// no flash_kda code: one CTA of 8 warps per SM writes `kib` KiB to its own
// region, three ways, and records per CTA the cycles (clock64) until every
// warp had issued its stores and until they were complete:
//   stg_rows  the checkpoint kernel's pattern: each warp instruction writes
//             8 rows x 32 bytes (float2 per lane, lanes 4g..4g+3 on row g)
//   stg_lines fully coalesced: each warp instruction writes 512 contiguous bytes
//   bulk      st.shared of the same bytes, then one cp.async.bulk (shared ->
//             global) per warp; "issued" is after the copy is issued
// "complete": after __threadfence() (stores) or cp.async.bulk.wait_group 0.
// Grids of 32 CTAs and one per SM show whether the rate is per SM.
//
//   nvcc -O3 -arch=sm_90a -o /tmp/probe_store_rate bench/probe_store_rate.cu && /tmp/probe_store_rate
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;

enum Mode { kStgRows = 0, kStgLines = 1, kBulk = 2 };
const char* const kModeNames[] = {"stg_rows", "stg_lines", "bulk"};

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// cycles[3 * cta + 0..2]: (issued, complete, bytes) of that CTA.
template <int kMode>
__global__ void store_rate(float* dst, long long* cycles, int kib) {
  extern __shared__ __align__(128) float staging[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t floats_per_cta = int64_t(kib) * 256;
  const int64_t floats_per_warp = floats_per_cta / kWarps;
  float* region = dst + blockIdx.x * floats_per_cta + warp * floats_per_warp;
  const float v = float(threadIdx.x) * 0.5f + 1.f;  // nonzero data
  __syncthreads();
  const long long t0 = clock64();
  if constexpr (kMode == kStgRows) {
    // rows of 128 floats (512 bytes); lane (g, q) writes row g, columns 2q, 2q+1 of each 8-column tile
    const int g = lane / 4, q = lane % 4;
    const int rows = int(floats_per_warp / 128);
    for (int r0 = 0; r0 < rows; r0 += 8)
#pragma unroll 4
      for (int tile = 0; tile < 16; ++tile)
        *reinterpret_cast<float2*>(region + (r0 + g) * 128 + tile * 8 + 2 * q) = make_float2(v, v + tile);
  } else if constexpr (kMode == kStgLines) {
    for (int64_t i = 4 * lane; i < floats_per_warp; i += 128)
      *reinterpret_cast<float4*>(region + i) = make_float4(v, v, v, v);
  } else {
    float* mine = staging + warp * floats_per_warp;
    for (int64_t i = 4 * lane; i < floats_per_warp; i += 128)
      *reinterpret_cast<float4*>(mine + i) = make_float4(v, v, v, v);
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncwarp();
    if (lane == 0) {
      asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(region),
                   "r"(smem_addr(mine)), "r"(uint32_t(floats_per_warp * 4))
                   : "memory");
      asm volatile("cp.async.bulk.commit_group;" ::: "memory");
    }
  }
  __syncwarp();
  const long long t_issued = clock64();
  if constexpr (kMode == kBulk) {
    if (lane == 0) asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
    __syncwarp();
  } else {
    __threadfence();
  }
  const long long t_done = clock64();
  // the slowest warp of the CTA
  __shared__ long long issued[kWarps], done[kWarps];
  if (lane == 0) {
    issued[warp] = t_issued - t0;
    done[warp] = t_done - t0;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    long long a = 0, b = 0;
    for (int i = 0; i < kWarps; ++i) {
      a = max(a, issued[i]);
      b = max(b, done[i]);
    }
    cycles[3 * blockIdx.x + 0] = a;
    cycles[3 * blockIdx.x + 1] = b;
    cycles[3 * blockIdx.x + 2] = int64_t(kib) * 1024;
  }
}

#define CHECK(x)                                                                  \
  do {                                                                            \
    const cudaError_t e_ = (x);                                                   \
    if (e_ != cudaSuccess) {                                                      \
      std::fprintf(stderr, "%s: %s (line %d)\n", #x, cudaGetErrorString(e_), __LINE__); \
      return 1;                                                                   \
    }                                                                             \
  } while (0)

template <int kMode>
int run(int ctas, int kib, float* dst, long long* d_cycles) {
  const int smem = 120 * 1024;  // (every mode: one CTA per SM)
  CHECK(cudaFuncSetAttribute(store_rate<kMode>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
  std::vector<long long> h(3 * ctas);
  std::vector<double> issued, done;
  for (int rep = 0; rep < 7; ++rep) {  // the first is a warm-up
    store_rate<kMode><<<ctas, kThreads, smem>>>(dst, d_cycles, kib);
    CHECK(cudaGetLastError());
    CHECK(cudaDeviceSynchronize());
    CHECK(cudaMemcpy(h.data(), d_cycles, h.size() * sizeof(long long), cudaMemcpyDeviceToHost));
    if (rep == 0) continue;
    for (int c = 0; c < ctas; ++c) {
      issued.push_back(double(h[3 * c]));
      done.push_back(double(h[3 * c + 1]));
    }
  }
  std::sort(issued.begin(), issued.end());
  std::sort(done.begin(), done.end());
  const double med_i = issued[issued.size() / 2], med_d = done[done.size() / 2];
  const double bytes = double(kib) * 1024;
  std::printf("| %-9s | %4d | %3d | %8.0f | %8.0f | %6.1f | %6.1f |\n", kModeNames[kMode], ctas, kib, med_i, med_d,
              bytes / med_i, bytes / med_d);
  return 0;
}

}  // namespace

int main() {
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  cudaDeviceProp prop{};
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("%s, %d SMs; per CTA (8 warps, one CTA per SM): median cycles until issued / complete\n\n",
              prop.name, sms);
  std::printf("| mode | CTAs | KiB | issued | complete | B/clk issued | B/clk complete |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
  float* dst = nullptr;
  long long* d_cycles = nullptr;
  const int max_kib = 64;
  CHECK(cudaMalloc(&dst, size_t(sms) * max_kib * 1024));
  CHECK(cudaMalloc(&d_cycles, size_t(sms) * 3 * sizeof(long long)));
  int rc = 0;
  for (int ctas : {32, sms})
    for (int kib : {32, 64}) {
      rc |= run<kStgRows>(ctas, kib, dst, d_cycles);
      rc |= run<kStgLines>(ctas, kib, dst, d_cycles);
      rc |= run<kBulk>(ctas, kib, dst, d_cycles);
    }
  CHECK(cudaFree(dst));
  CHECK(cudaFree(d_cycles));
  return rc;
}
