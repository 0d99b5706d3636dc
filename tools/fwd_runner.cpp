// Standalone runner of the CUDA forward, for ncu / compute-sanitizer and quick
// checks without Python:
//
//   fwd_runner --heads 4 --seq-len 300 --batch 2 --state fp32 --verify
//   fwd_runner --heads 96 --seq-len 8192 --repeats 50          (timing only)
//   fwd_runner --heads 2 --varlen 1,17,0,40 --verify
//
// Inputs are random (never zeros); outputs are NaN-poisoned before each call;
// --verify compares with the float64 reference (flash_kda::reference_fwd).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

struct Options {
  int heads = 4, batch = 2;
  int64_t seq_len = 300;
  std::vector<int64_t> varlen;
  std::string state = "fp32";
  bool verify = false;
  int repeats = 0;
  double lower_bound = -5.0;
  unsigned seed = 1234;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value after %s\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--heads") o.heads = std::stoi(next());
    else if (a == "--batch") o.batch = std::stoi(next());
    else if (a == "--seq-len") o.seq_len = std::stoll(next());
    else if (a == "--state") o.state = next();
    else if (a == "--verify") o.verify = true;
    else if (a == "--repeats") o.repeats = std::stoi(next());
    else if (a == "--lower-bound") o.lower_bound = std::stod(next());
    else if (a == "--seed") o.seed = unsigned(std::stoul(next()));
    else if (a == "--varlen") {
      std::string s = next();
      size_t pos = 0;
      while (pos <= s.size()) {
        size_t comma = s.find(',', pos);
        if (comma == std::string::npos) comma = s.size();
        o.varlen.push_back(std::stoll(s.substr(pos, comma - pos)));
        pos = comma + 1;
      }
    } else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      std::exit(2);
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const bool varlen = !o.varlen.empty();
  const int64_t B = varlen ? 1 : o.batch;
  int64_t T = o.seq_len;
  std::vector<int64_t> cu;
  if (varlen) {
    cu.push_back(0);
    for (int64_t l : o.varlen) cu.push_back(cu.back() + l);
    T = cu.back();
  }
  const int64_t N = varlen ? int64_t(o.varlen.size()) : B;
  const int64_t H = o.heads, D = flash_kda::kHeadDim;
  const int64_t act = B * T * H * D, state_elems = N * H * D * D;
  const DType state_dtype = o.state == "bf16" ? DType::kBFloat16 : DType::kFloat32;
  const bool has_state = o.state != "none";
  const size_t state_bytes = state_elems * (state_dtype == DType::kBFloat16 ? 2 : 4);

  std::mt19937 rng(o.seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  auto random_bf16 = [&](int64_t n) {
    std::vector<uint16_t> v(n);
    for (auto& x : v) x = to_bf16(normal(rng));
    return v;
  };
  std::vector<uint16_t> q = random_bf16(act), k = random_bf16(act), v = random_bf16(act),
                        g = random_bf16(act), beta = random_bf16(B * T * H);
  std::vector<float> A_log(H), dt_bias(H * D), h0(has_state ? state_elems : 0);
  for (auto& x : A_log) x = uniform(rng);
  for (auto& x : dt_bias) x = uniform(rng);
  for (auto& x : h0) x = 0.1f * normal(rng);
  std::vector<uint16_t> h0_bf16(h0.size());
  for (size_t i = 0; i < h0.size(); ++i) h0_bf16[i] = to_bf16(h0[i]);

  // Device buffers.
  auto dev = [](size_t bytes) {
    void* p = nullptr;
    CHECK_CUDA(cudaMalloc(&p, std::max<size_t>(bytes, 16)));
    return p;
  };
  void *dq = dev(act * 2), *dk = dev(act * 2), *dv = dev(act * 2), *dg = dev(act * 2),
       *dbeta = dev(B * T * H * 2), *dout = dev(act * 2), *dA = dev(H * 4), *ddt = dev(H * D * 4),
       *dh0 = dev(state_bytes), *dh1 = dev(state_bytes), *dcu = dev(cu.size() * 8);
  CHECK_CUDA(cudaMemcpy(dq, q.data(), act * 2, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dk, k.data(), act * 2, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dv, v.data(), act * 2, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dg, g.data(), act * 2, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dbeta, beta.data(), B * T * H * 2, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dA, A_log.data(), H * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(ddt, dt_bias.data(), H * D * 4, cudaMemcpyHostToDevice));
  if (has_state) {
    const void* src = state_dtype == DType::kBFloat16 ? static_cast<const void*>(h0_bf16.data())
                                                      : static_cast<const void*>(h0.data());
    CHECK_CUDA(cudaMemcpy(dh0, src, state_bytes, cudaMemcpyHostToDevice));
  }
  if (varlen) CHECK_CUDA(cudaMemcpy(dcu, cu.data(), cu.size() * 8, cudaMemcpyHostToDevice));

  auto fill = [&](flash_kda::FwdParams& p, DeviceType where, int dev_id, void* q_, void* k_, void* v_,
                  void* g_, void* beta_, void* out_, void* A_, void* dt_, void* h0_, void* h1_,
                  void* cu_, DType out_dtype, DType state_out_dtype) {
    p.q = flash_kda::make_tensor(q_, DType::kBFloat16, {B, T, H, D}, where, dev_id);
    p.k = flash_kda::make_tensor(k_, DType::kBFloat16, {B, T, H, D}, where, dev_id);
    p.v = flash_kda::make_tensor(v_, DType::kBFloat16, {B, T, H, D}, where, dev_id);
    p.g = flash_kda::make_tensor(g_, DType::kBFloat16, {B, T, H, D}, where, dev_id);
    p.beta = flash_kda::make_tensor(beta_, DType::kBFloat16, {B, T, H}, where, dev_id);
    p.out = flash_kda::make_tensor(out_, out_dtype, {B, T, H, D}, where, dev_id);
    p.A_log = flash_kda::make_tensor(A_, DType::kFloat32, {H}, where, dev_id);
    p.dt_bias = flash_kda::make_tensor(dt_, DType::kFloat32, {H, D}, where, dev_id);
    p.scale = 1.0 / std::sqrt(double(D));
    p.lower_bound = o.lower_bound;
    if (has_state) {
      p.initial_state = flash_kda::make_tensor(h0_, state_dtype, {N, H, D, D}, where, dev_id);
      p.final_state = flash_kda::make_tensor(h1_, state_out_dtype, {N, H, D, D}, where, dev_id);
    }
    if (varlen) p.cu_seqlens = flash_kda::make_tensor(cu_, DType::kInt64, {int64_t(cu.size())}, where, dev_id);
  };

  int device = 0;
  CHECK_CUDA(cudaGetDevice(&device));
  flash_kda::FwdParams p;
  fill(p, DeviceType::kCUDA, device, dq, dk, dv, dg, dbeta, dout, dA, ddt, dh0, dh1, dcu,
       DType::kBFloat16, state_dtype);
  size_t ws_bytes = 0;
  void* ws = nullptr;
  try {
    ws_bytes = flash_kda::fwd_workspace_size(p);
    if (ws_bytes) ws = dev(ws_bytes);
    CHECK_CUDA(cudaMemset(dout, 0xff, act * 2));  // NaN poison
    CHECK_CUDA(cudaMemset(dh1, 0xff, state_bytes));
    flash_kda::fwd(p, ws, ws_bytes, nullptr);
  } catch (const flash_kda::Error& e) {
    std::fprintf(stderr, "flash_kda error: %s\n", e.what());
    return 2;
  }
  CHECK_CUDA(cudaDeviceSynchronize());
  std::printf("case: B=%lld T=%lld H=%lld N=%lld state=%s%s\n", (long long)B, (long long)T,
              (long long)H, (long long)N, o.state.c_str(), varlen ? " varlen" : "");

  int status = 0;
  if (o.verify) {
    std::vector<uint16_t> out(act), h1_bf16;
    std::vector<float> h1_f32;
    CHECK_CUDA(cudaMemcpy(out.data(), dout, act * 2, cudaMemcpyDeviceToHost));
    std::vector<double> got_out(act), ref_out(act), ref_state(has_state ? state_elems : 0),
        got_state(has_state ? state_elems : 0);
    for (int64_t i = 0; i < act; ++i) got_out[i] = from_bf16(out[i]);
    if (has_state) {
      if (state_dtype == DType::kBFloat16) {
        h1_bf16.resize(state_elems);
        CHECK_CUDA(cudaMemcpy(h1_bf16.data(), dh1, state_bytes, cudaMemcpyDeviceToHost));
        for (int64_t i = 0; i < state_elems; ++i) got_state[i] = from_bf16(h1_bf16[i]);
      } else {
        h1_f32.resize(state_elems);
        CHECK_CUDA(cudaMemcpy(h1_f32.data(), dh1, state_bytes, cudaMemcpyDeviceToHost));
        for (int64_t i = 0; i < state_elems; ++i) got_state[i] = h1_f32[i];
      }
    }
    flash_kda::FwdParams r;
    void* h0_host = state_dtype == DType::kBFloat16 ? static_cast<void*>(h0_bf16.data())
                                                    : static_cast<void*>(h0.data());
    fill(r, DeviceType::kCPU, 0, q.data(), k.data(), v.data(), g.data(), beta.data(), ref_out.data(),
         A_log.data(), dt_bias.data(), h0_host, ref_state.data(), cu.data(), DType::kFloat64,
         DType::kFloat64);
    // initial and final state dtypes must match: give the reference an fp64
    // copy of the initial state the GPU saw.
    std::vector<double> h0_f64;
    if (has_state) {
      h0_f64.resize(state_elems);
      for (int64_t i = 0; i < state_elems; ++i)
        h0_f64[i] = state_dtype == DType::kBFloat16 ? from_bf16(h0_bf16[i]) : h0[i];
      r.initial_state = flash_kda::make_tensor(h0_f64.data(), DType::kFloat64, {N, H, D, D});
    }
    flash_kda::reference_fwd(r);
    bool finite = true;
    for (double x : got_out) finite &= std::isfinite(x);
    for (double x : got_state) finite &= std::isfinite(x);
    const double e_out = rel_l2(got_out, ref_out);
    const double e_state = has_state ? rel_l2(got_state, ref_state) : 0.0;
    const double bar_state = state_dtype == DType::kBFloat16 ? 8e-3 : 5e-3;
    const bool ok = finite && e_out <= 5e-3 && e_state <= bar_state;
    std::printf("verify: rel_l2(out)=%.3e rel_l2(state)=%.3e all_written=%s -> %s\n", e_out, e_state,
                finite ? "yes" : "NO", ok ? "PASS" : "FAIL");
    status = ok ? 0 : 1;
  }

  if (o.repeats > 0) {
    cudaEvent_t start, stop;
    CHECK_CUDA(cudaEventCreate(&start));
    CHECK_CUDA(cudaEventCreate(&stop));
    for (int i = 0; i < 5; ++i) flash_kda::fwd(p, ws, ws_bytes, nullptr);
    std::vector<float> times;
    for (int i = 0; i < o.repeats; ++i) {
      CHECK_CUDA(cudaEventRecord(start));
      flash_kda::fwd(p, ws, ws_bytes, nullptr);
      CHECK_CUDA(cudaEventRecord(stop));
      CHECK_CUDA(cudaEventSynchronize(stop));
      float ms = 0;
      CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
      times.push_back(ms);
    }
    std::sort(times.begin(), times.end());
    const double median = times[times.size() / 2];
    const double bytes = 5.0 * act * 2 + B * T * H * 2 + (has_state ? 2.0 * state_bytes : 0.0);
    std::printf("time: median %.4f ms over %d calls, %.2f TB/s effective\n", median, o.repeats,
                bytes / (median * 1e-3) / 1e12);
  }
  CHECK_CUDA(cudaGetLastError());
  return status;
}
