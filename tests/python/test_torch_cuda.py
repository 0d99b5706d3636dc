"""The CUDA path of the Python layer through PyTorch: streams, workspace,
devices, CUDA graphs. Skipped with "no CUDA device" on machines without one.
(The kernels' own accuracy suite lives in tests/gpu.)"""

from __future__ import annotations

import numpy as np
import pytest

import flash_kda
from flash_kda.testing import rel_l2

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.requires_cuda

# fwd on the GPU against the float64 oracle (the demo's bar).
BAR = 5e-3


def make(seqlens=None, batch=1, seq_len=256, heads=4, state="fp32", device="cuda", seed=0):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    if seqlens is not None:
        B, T, N = 1, sum(seqlens), len(seqlens)
        cu = torch.tensor([0] + list(np.cumsum(seqlens)), dtype=torch.int64)
    else:
        B, T, N, cu = batch, seq_len, batch, None

    def rnd(*shape):
        return torch.randn(*shape, generator=gen).to(torch.bfloat16)

    p = dict(q=rnd(B, T, heads, 128), k=rnd(B, T, heads, 128), v=rnd(B, T, heads, 128),
             g=rnd(B, T, heads, 128), beta=rnd(B, T, heads), scale=128 ** -0.5,
             A_log=torch.log(torch.rand(heads, generator=gen) * 15 + 1),
             dt_bias=0.5 * torch.randn(heads, 128, generator=gen), lower_bound=-5.0,
             initial_state=None, cu_seqlens=cu)
    if state is not None:
        dt = torch.float32 if state == "fp32" else torch.bfloat16
        p["initial_state"] = (0.1 * torch.randn(N, heads, 128, 128, generator=gen)).to(dt)
    host = dict(p)
    dev = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in p.items()}
    return host, dev, (B, T, heads, N)


def reference(host, dims):
    B, T, H, N = dims
    out = torch.zeros(B, T, H, 128, dtype=torch.float64)
    ht = torch.zeros(N, H, 128, 128, dtype=torch.float64)
    h0 = host["initial_state"].double() if host["initial_state"] is not None else None
    flash_kda.reference_fwd(host["q"], host["k"], host["v"], host["g"], host["beta"],
                            host["scale"], out, host["A_log"], host["dt_bias"],
                            host["lower_bound"], h0, ht, host["cu_seqlens"])
    return out.numpy(), ht.numpy()


def run(dev, dims, state_dtype=torch.float32):
    B, T, H, N = dims
    out = torch.full((B, T, H, 128), float("nan"), dtype=torch.bfloat16, device="cuda")
    ht = torch.full((N, H, 128, 128), float("nan"), dtype=state_dtype, device="cuda")
    flash_kda.fwd(dev["q"], dev["k"], dev["v"], dev["g"], dev["beta"], dev["scale"], out,
                  A_log=dev["A_log"], dt_bias=dev["dt_bias"], lower_bound=dev["lower_bound"],
                  initial_state=dev["initial_state"], final_state=ht,
                  cu_seqlens=dev["cu_seqlens"])
    return out, ht


def check(out, ht, host, dims):
    ref_out, ref_ht = reference(host, dims)
    out64 = out.double().cpu().numpy()
    ht64 = ht.double().cpu().numpy()
    assert np.isfinite(out64).all() and np.isfinite(ht64).all()
    assert rel_l2(out64, ref_out) < BAR
    assert rel_l2(ht64, ref_ht) < BAR


def test_build_has_kernels_for_this_gpu():
    dev = torch.cuda.current_device()
    assert flash_kda.cuda_available(dev), flash_kda.build_info()


@pytest.mark.parametrize("seqlens", [None, [100, 37, 0, 150]])
def test_cuda_matches_reference(seqlens):
    host, dev, dims = make(seqlens=seqlens, batch=2)
    out, ht = run(dev, dims)
    torch.cuda.synchronize()
    check(out, ht, host, dims)


def test_runs_on_the_current_torch_stream():
    host, dev, dims = make(seq_len=512)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        # A long op queued first on the side stream: if fwd ran on another
        # stream it would read q before this copy lands.
        q_true = dev["q"]
        dev["q"] = torch.empty_like(q_true)
        torch.cuda._sleep(50_000_000)
        dev["q"].copy_(q_true)
        out, ht = run(dev, dims)
    side.synchronize()
    check(out, ht, host, dims)


def test_cuda_graph_capture():
    host, dev, dims = make(seq_len=128)
    B, T, H, N = dims
    out = torch.zeros(B, T, H, 128, dtype=torch.bfloat16, device="cuda")
    ht = torch.zeros(N, H, 128, 128, dtype=torch.float32, device="cuda")

    def step():
        flash_kda.fwd(dev["q"], dev["k"], dev["v"], dev["g"], dev["beta"], dev["scale"], out,
                      dev["A_log"], dev["dt_bias"], -5.0, dev["initial_state"], ht)

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        step()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    out.zero_()
    ht.zero_()
    graph.replay()
    torch.cuda.synchronize()
    check(out, ht, host, dims)


def test_requires_grad_inputs():
    host, dev, dims = make(seq_len=64)
    dev["q"].requires_grad_(True)
    out, ht = run(dev, dims)
    torch.cuda.synchronize()
    check(out, ht, host, dims)


def test_mixed_devices_name_the_argument():
    host, dev, dims = make(seq_len=32)
    dev["A_log"] = host["A_log"]  # left on the CPU
    with pytest.raises(ValueError, match=r"^A_log: expected a tensor on the same device as q"):
        run(dev, dims)


def test_workspace_size_on_cuda_is_an_int():
    host, dev, dims = make(seqlens=[40, 60])
    B, T, H, N = dims
    out = torch.empty(B, T, H, 128, dtype=torch.bfloat16, device="cuda")
    n = flash_kda.workspace_size(dev["q"], dev["k"], dev["v"], dev["g"], dev["beta"],
                                 dev["scale"], out, dev["A_log"], dev["dt_bias"], -5.0,
                                 cu_seqlens=dev["cu_seqlens"])
    assert isinstance(n, int) and n >= 0


def test_cupy_inputs():
    cupy = pytest.importorskip("cupy")
    host, dev, dims = make(seq_len=96)
    try:
        cdev = {k: (cupy.from_dlpack(v) if isinstance(v, torch.Tensor) else v)
                for k, v in dev.items()}
    except Exception as e:  # CuPy without bfloat16
        pytest.skip(f"CuPy cannot import bfloat16 tensors: {e}")
    B, T, H, N = dims
    out_t = torch.full((B, T, H, 128), float("nan"), dtype=torch.bfloat16, device="cuda")
    ht_t = torch.full((N, H, 128, 128), float("nan"), dtype=torch.float32, device="cuda")
    torch.cuda.synchronize()
    flash_kda.fwd(cdev["q"], cdev["k"], cdev["v"], cdev["g"], cdev["beta"], cdev["scale"],
                  cupy.from_dlpack(out_t), cdev["A_log"], cdev["dt_bias"], -5.0,
                  cdev["initial_state"], cupy.from_dlpack(ht_t))
    cupy.cuda.get_current_stream().synchronize()
    check(out_t, ht_t, host, dims)


def test_jax_inputs():
    import os

    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    jax = pytest.importorskip("jax")
    try:
        gpus = jax.devices("gpu")
    except Exception as e:
        pytest.skip(f"JAX has no GPU backend here: {e}")
    if not gpus:
        pytest.skip("JAX has no GPU backend here")
    host, dev, dims = make(seq_len=80)
    torch.cuda.synchronize()
    jdev = {k: (jax.dlpack.from_dlpack(v) if isinstance(v, torch.Tensor) else v)
            for k, v in dev.items()}
    B, T, H, N = dims
    out_t = torch.full((B, T, H, 128), float("nan"), dtype=torch.bfloat16, device="cuda")
    ht_t = torch.full((N, H, 128, 128), float("nan"), dtype=torch.float32, device="cuda")
    torch.cuda.synchronize()
    # JAX inputs (default stream, workspace from PyTorch), PyTorch outputs.
    flash_kda.fwd(jdev["q"], jdev["k"], jdev["v"], jdev["g"], jdev["beta"], jdev["scale"],
                  out_t, jdev["A_log"], jdev["dt_bias"], -5.0, jdev["initial_state"], ht_t)
    torch.cuda.synchronize()
    check(out_t, ht_t, host, dims)


def test_legacy_dlpack_path_matches_exchange_path():
    """The PyTorch path without the DLPack C exchange API (older PyTorch):
    __dlpack__ import, stream and workspace chosen in Python."""
    host, dev, dims = make(seqlens=[64, 200, 17])
    out_a, ht_a = run(dev, dims)
    saved = dict(flash_kda._exchange)
    try:
        flash_kda._exchange[torch.Tensor] = False
        out_b, ht_b = run(dev, dims)
    finally:
        flash_kda._exchange.clear()
        flash_kda._exchange.update(saved)
    torch.cuda.synchronize()
    assert torch.equal(out_a, out_b) and torch.equal(ht_a, ht_b)


def test_exchange_api_is_used_when_available():
    if not hasattr(torch.Tensor, "__dlpack_c_exchange_api__"):
        pytest.skip("this PyTorch has no DLPack C exchange API")
    assert flash_kda._C.has_exchange_api(torch.Tensor)
