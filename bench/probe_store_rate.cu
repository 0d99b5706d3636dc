// What a burst of global stores costs an SM (issue #7: a checkpoint's 64 KiB
// per CTA cost ~3.3k cycles however it was issued, and ncu showed the prep
// warps throttled on the MIO queue while the recurrence stored it). A
// standalone probe, no flash_kda code. One CTA per SM, 16 warps like the
// forward kernel at bv128: warps 0-7 ("storers") write `kib` KiB to the
// CTA's own region of global memory, while warps 8-15 ("workers") run a
// fixed loop of dependent shared-memory loads and stores, as the prep does.
// Worker modes (the second table):
//   smem      the loop above
//   loads     each worker warp streams 8 KiB of fresh global memory (HBM:
//             each launch reads new addresses) with 16-byte loads, 4 in
//             flight per lane, as the prep's next chunks' inputs arrive:
//             whether a store burst delays the SM's loads
//   tma       the same 8 KiB per worker warp by bulk copies into shared
//             memory (4 x 2 KiB on one mbarrier), as the forward kernel's
//             prep loads its inputs: whether bulk stores hold up the copy
//             engine's loads
// Per CTA, clock64 cycles:
//   issued    until every storer had issued its stores
//   complete  until they were complete (__threadfence(), or
//             cp.async.bulk.wait_group 0 for bulk)
//   workers   the slowest worker's loop
// Storer modes:
//   none      the storers do nothing (the workers' baseline)
//   stg_rows  the checkpoint kernel's pattern: each warp instruction writes
//             8 rows x 32 bytes (float2 per lane, lanes 4g..4g+3 on row g)
//   stg_lines fully coalesced: each warp instruction writes 512 contiguous bytes
//   bulk      16-byte shared stores of the same bytes, then one
//             cp.async.bulk (shared -> global) per warp
//   bulk_one  the same shared stores, a barrier of the storer warps, then
//             one cp.async.bulk of all the bytes by one lane (does the
//             issue of a bulk store block its warp while earlier ones drain?)
// If the MIO model holds, the workers slow down under stg_* by about the
// stores' drain time and not under bulk. Grids of 32 CTAs and one per SM
// show whether the rates are per SM.
//
//   nvcc -O3 -arch=sm_90a -o /tmp/probe_store_rate bench/probe_store_rate.cu && /tmp/probe_store_rate
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

constexpr int kStorerWarps = 8;
constexpr int kWorkerWarps = 8;
constexpr int kThreads = 32 * (kStorerWarps + kWorkerWarps);
constexpr int kMaxKib = 64;
constexpr int kWorkerFloats = 512;  // per worker warp: 2 KiB of shared memory
constexpr int kWorkerIters = 1024;
constexpr int kLoadKibPerWarp = 8;
// storer staging, then per worker warp 8 KiB (the smem loop uses its first 2 KiB); > 113 KiB: one CTA per SM
constexpr int kSmemBytes = kMaxKib * 1024 + kWorkerWarps * kLoadKibPerWarp * 1024;

enum Mode { kNone = 0, kStgRows = 1, kStgLines = 2, kBulk = 3, kBulkOne = 4 };
const char* const kModeNames[] = {"none", "stg_rows", "stg_lines", "bulk", "bulk_one"};
enum Work { kSmemLoop = 0, kGlobalLoads = 1, kTmaLoads = 2 };
const char* const kWorkNames[] = {"smem", "loads", "tma"};
constexpr int kLaunches = 7;         // per row; the first is a warm-up
constexpr int kLoadRegions = 16;     // launches cycle through 16 x 8.4 MB (> 50 MB of L2): loads from HBM
int g_next_region = 0;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// A storer warp's `floats` floats to `region` (bulk_one: warp 0 sends all the storers' floats).
template <int kMode>
__device__ void store_burst(float* region, float* staging, int64_t floats, int lane, float v, bool first_warp) {
  if constexpr (kMode == kStgRows) {
    // rows of 128 floats (512 bytes); lane (g, q) writes row g, columns 2q, 2q+1 of each 8-column tile
    const int g = lane / 4, q = lane % 4;
    for (int r0 = 0; r0 < int(floats / 128); r0 += 8)
#pragma unroll 4
      for (int tile = 0; tile < 16; ++tile)
        *reinterpret_cast<float2*>(region + (r0 + g) * 128 + tile * 8 + 2 * q) = make_float2(v, v + tile);
  } else if constexpr (kMode == kStgLines) {
    for (int64_t i = 4 * lane; i < floats; i += 128) *reinterpret_cast<float4*>(region + i) = make_float4(v, v, v, v);
  } else if constexpr (kMode == kBulk || kMode == kBulkOne) {
    for (int64_t i = 4 * lane; i < floats; i += 128) *reinterpret_cast<float4*>(staging + i) = make_float4(v, v, v, v);
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncwarp();
    if constexpr (kMode == kBulkOne) {
      asm volatile("bar.sync 1, %0;" ::"n"(32 * kStorerWarps) : "memory");  // every storer's part is staged
      if (lane == 0 && first_warp) {
        asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(region),
                     "r"(smem_addr(staging)), "r"(uint32_t(floats * 4 * kStorerWarps))
                     : "memory");
        asm volatile("cp.async.bulk.commit_group;" ::: "memory");
      }
    } else if (lane == 0) {
      asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(region),
                   "r"(smem_addr(staging)), "r"(uint32_t(floats * 4))
                   : "memory");
      asm volatile("cp.async.bulk.commit_group;" ::: "memory");
    }
  }
}

// cycles[3 * cta + 0..2]: issued, complete, workers of that CTA.
// A worker warp's 8 KiB of global memory, 4 loads of 16 bytes in flight per lane.
__device__ float load_stream(const float4* src, int lane) {
  float acc = 0.f;
  constexpr int kLines = kLoadKibPerWarp * 1024 / 16;
#pragma unroll 1
  for (int i = lane; i < kLines; i += 4 * 32) {
    float4 x[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) x[u] = __ldcg(src + i + 32 * u);
#pragma unroll
    for (int u = 0; u < 4; ++u) acc += x[u].x + x[u].w;
  }
  return acc;
}

// A worker warp's 8 KiB by 4 bulk copies of 2 KiB into `dst` (shared), on mbarrier `bar` (phase 0).
__device__ float tma_stream(const float4* src, float* dst, uint64_t* bar, int lane) {
  constexpr uint32_t kBytes = kLoadKibPerWarp * 1024, kPiece = 2048;
  if (lane == 0) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(kBytes) : "memory");
#pragma unroll
    for (uint32_t i = 0; i < kBytes / kPiece; ++i)
      asm volatile(
          "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
              smem_addr(dst) + i * kPiece),
          "l"(reinterpret_cast<const char*>(src) + i * kPiece), "r"(kPiece), "r"(smem_addr(bar))
          : "memory");
  }
  uint32_t done = 0;
  while (!done)
    asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0;\n selp.u32 %0, 1, 0, p;\n}"
                 : "=r"(done)
                 : "r"(smem_addr(bar))
                 : "memory");
  return dst[lane * 4] + dst[kBytes / 4 - 1 - lane];
}

template <int kMode, int kWork>
__global__ void __launch_bounds__(kThreads, 1) store_probe(float* dst, long long* cycles, float* sink, int kib,
                                                           const float4* load_src) {
  extern __shared__ __align__(128) float smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __shared__ long long issued[kStorerWarps], done[kStorerWarps], worked[kWorkerWarps];
  __shared__ __align__(8) uint64_t bars[kWorkerWarps];
  const float v = float(threadIdx.x) * 0.5f + 1.f;  // nonzero data
  float* workspace = smem + kMaxKib * 256;  // the workers' shared memory
  if (warp >= kStorerWarps)
    for (int i = lane; i < kWorkerFloats; i += 32) workspace[(warp - kStorerWarps) * (kLoadKibPerWarp * 256) + i] = v;
  if (threadIdx.x < kWorkerWarps) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&bars[threadIdx.x])) : "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  __syncthreads();
  const long long t0 = clock64();
  if (warp < kStorerWarps) {
    const int64_t floats = int64_t(kib) * 256 / kStorerWarps;
    float* region = dst + blockIdx.x * int64_t(kMaxKib) * 256 + warp * floats;
    store_burst<kMode>(region, smem + warp * floats, floats, lane, v, warp == 0);
    __syncwarp();
    const long long t_issued = clock64();
    if constexpr (kMode == kBulk || kMode == kBulkOne) {
      if (lane == 0) asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
      __syncwarp();
    } else if constexpr (kMode != kNone) {
      __threadfence();
    }
    if (lane == 0) {
      issued[warp] = t_issued - t0;
      done[warp] = clock64() - t0;
    }
  } else if constexpr (kWork == kGlobalLoads || kWork == kTmaLoads) {
    const int worker = warp - kStorerWarps;
    const float4* src = load_src + (int64_t(blockIdx.x) * kWorkerWarps + worker) * (kLoadKibPerWarp * 1024 / 16);
    const float acc = kWork == kGlobalLoads
                          ? load_stream(src, lane)
                          : tma_stream(src, workspace + worker * (kLoadKibPerWarp * 256), &bars[worker], lane);
    __syncwarp();
    if (lane == 0) worked[warp - kStorerWarps] = clock64() - t0;
    if (acc == -1.f) sink[threadIdx.x] = acc;
  } else {
    // dependent shared loads and stores: each iteration's address depends on the last load
    float* mine = workspace + (warp - kStorerWarps) * (kLoadKibPerWarp * 256);
    uint32_t idx = uint32_t(lane);
    float acc = 0.f;
    for (int i = 0; i < kWorkerIters; ++i) {
      const float2 x = *reinterpret_cast<const float2*>(mine + 2 * (idx % (kWorkerFloats / 2)));
      acc += x.x;
      idx = idx * 5u + 1u + (__float_as_uint(x.y) & 1u);
      *reinterpret_cast<float2*>(mine + 2 * ((idx * 7u) % (kWorkerFloats / 2))) = make_float2(acc, x.y);
    }
    __syncwarp();
    if (lane == 0) worked[warp - kStorerWarps] = clock64() - t0;
    if (acc == -1.f) sink[threadIdx.x] = acc;  // keeps the loop
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    long long a = 0, b = 0, c = 0;
    for (int i = 0; i < kStorerWarps; ++i) {
      a = max(a, issued[i]);
      b = max(b, done[i]);
    }
    for (int i = 0; i < kWorkerWarps; ++i) c = max(c, worked[i]);
    cycles[3 * blockIdx.x + 0] = a;
    cycles[3 * blockIdx.x + 1] = b;
    cycles[3 * blockIdx.x + 2] = c;
  }
}

#define CHECK(x)                                                                        \
  do {                                                                                  \
    const cudaError_t e_ = (x);                                                         \
    if (e_ != cudaSuccess) {                                                            \
      std::fprintf(stderr, "%s: %s (line %d)\n", #x, cudaGetErrorString(e_), __LINE__); \
      return 1;                                                                         \
    }                                                                                   \
  } while (0)

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// load_src: kLoadRegions regions of sms x kWorkerWarps x 8 KiB (each launch the next one)
template <int kMode, int kWork>
int run(int ctas, int kib, float* dst, long long* d_cycles, float* sink, const float4* load_src, int sms) {
  CHECK(cudaFuncSetAttribute(store_probe<kMode, kWork>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
  std::vector<long long> h(3 * size_t(ctas));
  std::vector<double> issued, done, worked;
  const int64_t launch_lines = int64_t(sms) * kWorkerWarps * kLoadKibPerWarp * 1024 / 16;
  for (int rep = 0; rep < kLaunches; ++rep) {  // the first is a warm-up
    const float4* src = load_src + (g_next_region++ % kLoadRegions) * launch_lines;
    store_probe<kMode, kWork><<<ctas, kThreads, kSmemBytes>>>(dst, d_cycles, sink, kib, src);
    CHECK(cudaGetLastError());
    CHECK(cudaDeviceSynchronize());
    CHECK(cudaMemcpy(h.data(), d_cycles, h.size() * sizeof(long long), cudaMemcpyDeviceToHost));
    if (rep == 0) continue;
    for (int c = 0; c < ctas; ++c) {
      issued.push_back(double(h[3 * c]));
      done.push_back(double(h[3 * c + 1]));
      worked.push_back(double(h[3 * c + 2]));
    }
  }
  const double bytes = kMode == kNone ? 0. : double(kib) * 1024;
  const double i = median(issued), d = median(done);
  std::printf("| %-5s | %-9s | %4d | %3d | %8.0f | %8.0f | %6.1f | %8.0f |\n", kWorkNames[kWork], kModeNames[kMode],
              ctas, kMode == kNone ? 0 : kib, i, d, d > 0 ? bytes / d : 0., median(worked));
  return 0;
}

// Every storer mode against one worker mode, on 32 CTAs and on one per SM.
template <int kWork>
int run_rows(float* dst, long long* d_cycles, float* sink, const float4* load_src, int sms) {
  int rc = 0;
  for (int ctas : {32, sms}) {
    rc |= run<kNone, kWork>(ctas, 0, dst, d_cycles, sink, load_src, sms);
    for (int kib : {32, 64}) {
      rc |= run<kStgRows, kWork>(ctas, kib, dst, d_cycles, sink, load_src, sms);
      rc |= run<kStgLines, kWork>(ctas, kib, dst, d_cycles, sink, load_src, sms);
      rc |= run<kBulk, kWork>(ctas, kib, dst, d_cycles, sink, load_src, sms);
      rc |= run<kBulkOne, kWork>(ctas, kib, dst, d_cycles, sink, load_src, sms);
    }
  }
  return rc;
}

}  // namespace

int main() {
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  cudaDeviceProp prop{};
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("%s, %d SMs; one CTA per SM, 8 storer + 8 worker warps; median cycles per CTA\n\n", prop.name, sms);
  std::printf("| workers | storers | CTAs | KiB | issued | complete | B/clk | workers |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|---:|\n");
  float* dst = nullptr;
  float* sink = nullptr;
  float4* load_src = nullptr;
  long long* d_cycles = nullptr;
  const size_t load_bytes = size_t(kLoadRegions) * sms * kWorkerWarps * kLoadKibPerWarp * 1024;
  CHECK(cudaMalloc(&dst, size_t(sms) * kMaxKib * 1024));
  CHECK(cudaMalloc(&sink, kThreads * sizeof(float)));
  CHECK(cudaMalloc(&load_src, load_bytes));
  CHECK(cudaMemset(load_src, 0x3c, load_bytes));
  CHECK(cudaMalloc(&d_cycles, size_t(sms) * 3 * sizeof(long long)));
  int rc = 0;
  rc |= run_rows<kSmemLoop>(dst, d_cycles, sink, load_src, sms);
  rc |= run_rows<kGlobalLoads>(dst, d_cycles, sink, load_src, sms);
  rc |= run_rows<kTmaLoads>(dst, d_cycles, sink, load_src, sms);
  CHECK(cudaFree(load_src));
  CHECK(cudaFree(dst));
  CHECK(cudaFree(sink));
  CHECK(cudaFree(d_cycles));
  return rc;
}
