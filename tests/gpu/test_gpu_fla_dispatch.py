"""flash-linear-attention's chunk_kda dispatches to flash_kda on CUDA tensors
(issue #5: the FLA drop-in, on the GPU, with the PyPI wheel fla-core 0.6.0).

FLA reads FLA_FLASH_KDA at call time, so one process can run both paths:
dispatch on (FLA_FLASH_KDA=1: FLA hands the call to flash_kda.fwd and logs
"chunk_kda -> flash_kda" at INFO) and off (FLA_FLASH_KDA=0: its own Triton
kernels). The two must agree within the accuracy bar, and each must be close
to the float64 oracle. Arguments FLA passes through that we cannot serve (a
bf16 initial state with FLA's fp32 final state) raise a clear error.
"""
import logging

import pytest

from kda_cases import TOL_OUT, TOL_STATE_FP32, import_chunk_kda, on_cuda, rel_l2, torch

D = 128


def _fla():
    if not on_cuda():
        pytest.skip("needs CUDA: FLA's Triton path (the host version is tests/python/test_fla_dispatch.py)")
    chunk_kda, note = import_chunk_kda()
    if chunk_kda is None:
        pytest.skip(note)
    return chunk_kda


def _inputs(seqlens, H, seed, h0_dtype):
    g = torch.Generator().manual_seed(seed)
    T = sum(seqlens)
    q, k, v, gate = (torch.randn(1, T, H, D, generator=g).to(torch.bfloat16) for _ in range(4))
    beta = torch.randn(1, T, H, generator=g).to(torch.bfloat16)
    A_log = torch.rand(H, generator=g)
    dt_bias = torch.rand(H * D, generator=g)  # FLA's 1-D form; it views it [H, K]
    h0 = (torch.randn(len(seqlens), H, D, D, generator=g) * 0.1).to(h0_dtype)
    cu = torch.tensor([0] + torch.tensor(seqlens).cumsum(0).tolist(), dtype=torch.int64)
    return [t.cuda() for t in (q, k, v, gate, beta, A_log, dt_bias, h0, cu)]


def _call(chunk_kda, q, k, v, gate, beta, A_log, dt_bias, h0, cu):
    with torch.inference_mode():
        return chunk_kda(q, k, v, gate, beta, scale=D ** -0.5, initial_state=h0, output_final_state=True,
                         use_qk_l2norm_in_kernel=True, use_gate_in_kernel=True,
                         use_beta_sigmoid_in_kernel=True, safe_gate=True, lower_bound=-5.0,
                         state_v_first=True, A_log=A_log, dt_bias=dt_bias, cu_seqlens=cu)


def _forget_logged_dispatch():
    """FLA logs a dispatch once per process; forget it so this test sees it."""
    import fla.backends as fb

    for reg in list(fb._operation_registries.values()) + list(fb._function_registries.values()):
        reg._logged.clear()


def test_chunk_kda_dispatches_to_flash_kda_on_cuda(monkeypatch, caplog):
    import flash_kda

    chunk_kda = _fla()
    inp = _inputs([1300, 1, 0, 547, 200], H=4, seed=11, h0_dtype=torch.float32)

    monkeypatch.setenv("FLA_FLASH_KDA", "0")  # FLA's own Triton path
    fla_out, fla_ht = _call(chunk_kda, *inp)
    torch.cuda.synchronize()

    calls = []
    real = flash_kda.fwd
    monkeypatch.setattr(flash_kda, "fwd", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    monkeypatch.setenv("FLA_FLASH_KDA", "1")
    _forget_logged_dispatch()
    with caplog.at_level(logging.INFO):
        out, ht = _call(chunk_kda, *inp)
    torch.cuda.synchronize()
    assert len(calls) == 1, "chunk_kda did not dispatch to flash_kda.fwd"
    assert any("chunk_kda -> flash_kda" in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records]
    assert torch.isfinite(out).all() and torch.isfinite(ht).all()

    # FLA's path and ours agree, and ours is closer to the oracle than FLA's bar
    import flash_kda as fk

    q, k, v, gate, beta, A_log, dt_bias, h0, cu = [t.cpu() for t in inp]
    ref = torch.empty(q.shape, dtype=torch.float64)
    ref_ht = torch.empty(h0.shape, dtype=torch.float64)
    fk.reference_fwd(q, k, v, gate, beta, D ** -0.5, ref, A_log, dt_bias.view(4, D), -5.0, h0.double(), ref_ht, cu)
    e_ours, e_ours_state = rel_l2(out, ref), rel_l2(ht, ref_ht)
    e_fla, e_fla_state = rel_l2(fla_out, ref), rel_l2(fla_ht, ref_ht)
    print(f"dispatched: out {e_ours:.2e} state {e_ours_state:.2e}; FLA Triton: out {e_fla:.2e} state {e_fla_state:.2e}; "
          f"ours vs FLA: out {rel_l2(out, fla_out):.2e} state {rel_l2(ht, fla_ht):.2e}")
    assert e_ours <= TOL_OUT and e_ours_state <= TOL_STATE_FP32
    assert rel_l2(out, fla_out) <= 2 * TOL_OUT and rel_l2(ht, fla_ht) <= 2 * TOL_STATE_FP32


def test_unservable_argument_through_fla_raises(monkeypatch):
    """FLA always allocates an fp32 final state; a bf16 initial state reaches us
    with mismatched state dtypes: a clear TypeError, not a wrong result."""
    chunk_kda = _fla()
    monkeypatch.setenv("FLA_FLASH_KDA", "1")
    inp = _inputs([64, 17], H=2, seed=12, h0_dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="final_state: expected the same dtype as initial_state"):
        _call(chunk_kda, *inp)
