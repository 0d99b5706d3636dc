"""flash-linear-attention's chunk_kda dispatches to this flash_kda (drop-in).

FLA (fla-core) hands `chunk_kda` calls that meet its verifier to the package
importable as `flash_kda`, with FlashKDA's calling convention: seven
positional arguments, keywords A_log, dt_bias (viewed [H, K]), lower_bound,
initial_state, final_state (always a new fp32 [N, H, V, K]), cu_seqlens.
On host tensors that reaches our CPU backend, so the contract is checked
here; tests/gpu/test_gpu_fla.py compares against FLA's own Triton path on a GPU.
Skipped without torch or fla-core.
"""

from __future__ import annotations

import logging

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fla.ops.kda", reason="fla-core not installed")

import flash_kda  # noqa: E402
from fla.ops.kda import chunk_kda  # noqa: E402

D = 128


def _inputs(seqlens, H, seed, h0_dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    T = sum(seqlens)
    q, k, v, gate = (torch.randn(1, T, H, D, generator=g).to(torch.bfloat16) for _ in range(4))
    beta = torch.randn(1, T, H, generator=g).to(torch.bfloat16)
    A_log = torch.rand(H, generator=g)
    dt_bias = torch.rand(H * D, generator=g)  # FLA's 1-D form; it views it [H, K]
    h0 = (torch.randn(len(seqlens), H, D, D, generator=g) * 0.1).to(h0_dtype)
    cu = torch.tensor([0] + list(torch.tensor(seqlens).cumsum(0)), dtype=torch.int64)
    return q, k, v, gate, beta, A_log, dt_bias, h0, cu


def _chunk_kda(q, k, v, gate, beta, A_log, dt_bias, h0, cu):
    with torch.inference_mode():
        return chunk_kda(q, k, v, gate, beta, scale=D ** -0.5, initial_state=h0, output_final_state=True,
                         use_qk_l2norm_in_kernel=True, use_gate_in_kernel=True,
                         use_beta_sigmoid_in_kernel=True, safe_gate=True, lower_bound=-5.0,
                         state_v_first=True, A_log=A_log, dt_bias=dt_bias, cu_seqlens=cu)


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def test_chunk_kda_dispatches_here_and_matches_the_oracle(monkeypatch, caplog):
    calls = []
    real = flash_kda.fwd
    monkeypatch.setattr(flash_kda, "fwd", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    q, k, v, gate, beta, A_log, dt_bias, h0, cu = _inputs([40, 0, 17, 1], H=2, seed=1)
    with caplog.at_level(logging.INFO):
        out, ht = _chunk_kda(q, k, v, gate, beta, A_log, dt_bias, h0, cu)
    assert len(calls) == 1, "chunk_kda did not reach flash_kda.fwd"
    assert any("flash_kda" in r.getMessage() for r in caplog.records)
    assert set(calls[0]) == {"A_log", "dt_bias", "lower_bound", "initial_state", "final_state", "cu_seqlens"}
    assert ht.dtype == torch.float32 and ht.shape == h0.shape

    ref_out = torch.empty(out.shape, dtype=torch.float64)
    ref_ht = torch.empty(ht.shape, dtype=torch.float64)
    flash_kda.reference_fwd(q, k, v, gate, beta, D ** -0.5, ref_out, A_log=A_log,
                            dt_bias=dt_bias.view(2, D), lower_bound=-5.0,
                            initial_state=h0.double(), final_state=ref_ht, cu_seqlens=cu)
    assert _rel(out, ref_out) <= 5e-3
    assert _rel(ht, ref_ht) <= 5e-3


def test_bf16_initial_state_is_refused_clearly():
    """FLA always allocates an fp32 final_state; with a bf16 initial_state the
    dtypes differ, which the contract (docs/kda.md) refuses, as FlashKDA does:
    a clear TypeError naming final_state, never a wrong result."""
    args = _inputs([20, 30], H=2, seed=2, h0_dtype=torch.bfloat16)
    with pytest.raises(TypeError, match=r"^final_state: .*same dtype as initial_state"):
        _chunk_kda(*args)
