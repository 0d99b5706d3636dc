// Standalone runner of the CUDA decode step, for ncu / compute-sanitizer and
// quick checks without Python:
//
//   decode_runner --seqs 64 --heads 32 --tokens 1 --state fp32 --repeats 100   (timing)
//   decode_runner --seqs 5 --heads 4 --tokens 4 --state bf16 --verify
//
// The pool has 2 * seqs slots; each sequence takes a random slot, every 7th
// sequence is a padding row (index -1). Inputs are random (never zeros), out is
// NaN-poisoned; --verify compares out and the pool with the float64 reference
// (flash_kda::reference_decode) and checks that unnamed slots are unchanged.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "flash_kda/flash_kda.h"
#include "runner_util.h"

namespace {

using flash_kda::DType;
using flash_kda::DeviceType;
using runner::from_bf16;
using runner::rel_l2;
using runner::to_bf16;

// A host buffer and its device copy.
struct Buffer {
  std::vector<unsigned char> host;
  void* device = nullptr;
  DType dtype;
  std::vector<int64_t> shape;
  Buffer(DType d, std::vector<int64_t> s) : dtype(d), shape(std::move(s)) {
    host.resize(bytes());
    CHECK_CUDA(cudaMalloc(&device, std::max<size_t>(bytes(), 16)));
  }
  ~Buffer() { cudaFree(device); }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  size_t bytes() const { return size_t(numel()) * flash_kda::dtype_size(dtype); }
  void upload() { CHECK_CUDA(cudaMemcpy(device, host.data(), bytes(), cudaMemcpyHostToDevice)); }
  void download() { CHECK_CUDA(cudaMemcpy(host.data(), device, bytes(), cudaMemcpyDeviceToHost)); }
  flash_kda::TensorRef ref(bool on_device) {
    flash_kda::TensorRef t;
    t.data = on_device ? device : host.data();
    t.dtype = dtype;
    t.ndim = int(shape.size());
    int64_t stride = 1;
    for (int i = t.ndim - 1; i >= 0; --i) {
      t.shape[i] = shape[i];
      t.strides[i] = stride;
      stride *= shape[i];
    }
    t.device = on_device ? DeviceType::kCUDA : DeviceType::kCPU;
    return t;
  }
  double get(int64_t i) const {
    switch (dtype) {
      case DType::kBFloat16: return from_bf16(reinterpret_cast<const uint16_t*>(host.data())[i]);
      case DType::kFloat32: return reinterpret_cast<const float*>(host.data())[i];
      default: return reinterpret_cast<const double*>(host.data())[i];
    }
  }
  void set(int64_t i, double x) {
    switch (dtype) {
      case DType::kBFloat16: reinterpret_cast<uint16_t*>(host.data())[i] = to_bf16(float(x)); break;
      case DType::kFloat32: reinterpret_cast<float*>(host.data())[i] = float(x); break;
      default: reinterpret_cast<double*>(host.data())[i] = x; break;
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  int64_t N = 64, H = 32, t = 1;
  std::string state = "fp32";
  bool verify = false;
  int repeats = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--seqs") N = std::atoll(next());
    else if (a == "--heads") H = std::atoll(next());
    else if (a == "--tokens") t = std::atoll(next());
    else if (a == "--state") state = next();
    else if (a == "--verify") verify = true;
    else if (a == "--repeats") repeats = std::atoi(next());
    else {
      std::fprintf(stderr,
                   "usage: decode_runner [--seqs N] [--heads H] [--tokens t] [--state fp32|bf16] "
                   "[--verify] [--repeats R]\n");
      return 2;
    }
  }
  const int64_t D = flash_kda::kHeadDim, P = 2 * N;
  const DType state_dtype = state == "bf16" ? DType::kBFloat16 : DType::kFloat32;
  std::mt19937_64 rng(1234);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);

  Buffer q(DType::kBFloat16, {N, t, H, D}), k(DType::kBFloat16, {N, t, H, D}),
      v(DType::kBFloat16, {N, t, H, D}), g(DType::kBFloat16, {N, t, H, D}),
      beta(DType::kBFloat16, {N, t, H}), out(DType::kBFloat16, {N, t, H, D}),
      A_log(DType::kFloat32, {H}), dt_bias(DType::kFloat32, {H, D}), pool(state_dtype, {P, H, D, D}),
      slots(DType::kInt64, {N});
  for (Buffer* b : {&q, &k, &v, &beta, &pool})
    for (int64_t i = 0; i < b->numel(); ++i) b->set(i, normal(rng));
  for (int64_t i = 0; i < g.numel(); ++i) g.set(i, 8 * uniform(rng));
  for (int64_t i = 0; i < H; ++i) A_log.set(i, uniform(rng));
  for (int64_t i = 0; i < dt_bias.numel(); ++i) dt_bias.set(i, 4 * uniform(rng));
  std::vector<int64_t> perm(P);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  auto* slot = reinterpret_cast<int64_t*>(slots.host.data());
  for (int64_t n = 0; n < N; ++n) slot[n] = (n % 7 == 6) ? -1 : perm[n];
  for (int64_t i = 0; i < out.numel(); ++i) out.set(i, NAN);
  for (Buffer* b : {&q, &k, &v, &g, &beta, &out, &A_log, &dt_bias, &pool, &slots}) b->upload();
  const std::vector<unsigned char> pool_before = pool.host;

  auto params = [&](bool on_device) {
    flash_kda::DecodeParams p;
    p.q = q.ref(on_device);
    p.k = k.ref(on_device);
    p.v = v.ref(on_device);
    p.g = g.ref(on_device);
    p.beta = beta.ref(on_device);
    p.scale = 1.0 / std::sqrt(double(D));
    p.out = out.ref(on_device);
    p.A_log = A_log.ref(on_device);
    p.dt_bias = dt_bias.ref(on_device);
    p.lower_bound = -5.0;
    p.state = pool.ref(on_device);
    p.state_indices = slots.ref(on_device);
    return p;
  };
  try {
    const flash_kda::DecodeParams p = params(true);
    const size_t ws_bytes = flash_kda::decode_workspace_size(p);
    void* ws = nullptr;
    CHECK_CUDA(cudaMalloc(&ws, ws_bytes));
    flash_kda::decode(p, ws, ws_bytes, nullptr);
    CHECK_CUDA(cudaDeviceSynchronize());
    int32_t status = -1;
    CHECK_CUDA(cudaMemcpy(&status, ws, 4, cudaMemcpyDeviceToHost));
    std::printf("decode N=%lld H=%lld t=%lld state=%s: status word %d\n", (long long)N, (long long)H,
                (long long)t, state.c_str(), status);
    int failed = 0;
    if (verify) {
      out.download();
      pool.download();
      // The reference on host copies of the inputs (pool restored), fp64 out and pool.
      Buffer ref_out(DType::kFloat64, {N, t, H, D}), ref_pool(DType::kFloat64, {P, H, D, D});
      Buffer pool0(state_dtype, {P, H, D, D});
      pool0.host = pool_before;
      for (int64_t i = 0; i < ref_pool.numel(); ++i) ref_pool.set(i, pool0.get(i));
      flash_kda::DecodeParams r = params(false);
      r.out = ref_out.ref(false);
      r.state = ref_pool.ref(false);
      flash_kda::reference_decode(r);
      std::vector<double> got, want;
      for (int64_t i = 0; i < out.numel(); ++i) got.push_back(out.get(i)), want.push_back(ref_out.get(i));
      const double e_out = rel_l2(got, want);
      got.clear(), want.clear();
      int64_t changed_unnamed = 0;
      std::vector<bool> named(P, false);
      for (int64_t n = 0; n < N; ++n)
        if (slot[n] >= 0) named[slot[n]] = true;
      const int64_t per = H * D * D;
      for (int64_t s = 0; s < P; ++s) {
        for (int64_t i = s * per; i < (s + 1) * per; ++i) {
          if (named[s]) got.push_back(pool.get(i)), want.push_back(ref_pool.get(i));
          else changed_unnamed += pool.get(i) != pool0.get(i) ? 1 : 0;
        }
      }
      const double e_state = rel_l2(got, want);
      std::printf("verify: out rel L2 %.3g, state rel L2 %.3g, unnamed elements changed %lld\n", e_out,
                  e_state, (long long)changed_unnamed);
      failed = !(e_out <= 5e-3 && e_state <= 5e-3 && changed_unnamed == 0);
    }
    if (repeats > 0) {
      cudaEvent_t a, b;
      CHECK_CUDA(cudaEventCreate(&a));
      CHECK_CUDA(cudaEventCreate(&b));
      CHECK_CUDA(cudaEventRecord(a));
      for (int i = 0; i < repeats; ++i) flash_kda::decode(p, ws, ws_bytes, nullptr);
      CHECK_CUDA(cudaEventRecord(b));
      CHECK_CUDA(cudaEventSynchronize(b));
      float ms = 0;
      CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
      const double sb = state_dtype == DType::kFloat32 ? 4 : 2;
      const double bytes = 2.0 * N * H * D * D * sb + 6.0 * N * t * H * D * 2;
      std::printf("%d calls: %.2f us/call, %.0f GB/s (state r+w + tokens)\n", repeats, 1e3 * ms / repeats,
                  bytes / (1e-3 * ms / repeats) / 1e9);
    }
    cudaFree(ws);
    return failed;
  } catch (const flash_kda::Error& e) {
    std::fprintf(stderr, "flash_kda::Error: %s\n", e.what());
    return 2;
  }
}
