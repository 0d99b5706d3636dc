"""torch.ops.flash_kda.decode: the custom op behind torch.compile support of
flash_kda.decode (host tensors: the CPU path; the op is the same on CUDA)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import flash_kda  # noqa: E402

D = 128


def _problem(N=3, t=2, H=2, P=5, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(s, generator=g)

    p = dict(q=r(N, t, H, D).bfloat16(), k=r(N, t, H, D).bfloat16(), v=r(N, t, H, D).bfloat16(),
             g=r(N, t, H, D).bfloat16(), beta=r(N, t, H).bfloat16(), A_log=torch.rand(H, generator=g),
             dt_bias=torch.rand(H, D, generator=g), pool=r(P, H, D, D) * 0.1,
             idx=torch.tensor([3, -1, 0][:N], dtype=torch.int32))
    return p


def _args(p, out, pool):
    return (p["q"], p["k"], p["v"], p["g"], p["beta"], D ** -0.5, out, p["A_log"], p["dt_bias"], -5.0, pool,
            p["idx"], None)


def _step(p, out, pool):
    flash_kda.decode(*_args(p, out, pool))
    return out.float().sum() * 2  # something after the call, so the graph continues


def test_decode_op_is_registered_and_passes_opcheck():
    flash_kda.register_torch_op()
    op = torch.ops.flash_kda.decode
    p = _problem()
    out = torch.full(p["v"].shape, float("nan"), dtype=torch.bfloat16)
    torch.library.opcheck(op, _args(p, out, p["pool"].clone()))


def test_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    p = _problem(seed=1)
    out_e, pool_e = torch.full(p["v"].shape, float("nan"), dtype=torch.bfloat16), p["pool"].clone()
    res_e = _step(p, out_e, pool_e)
    compiled = torch.compile(_step, fullgraph=True, backend="aot_eager")
    out_c, pool_c = torch.full(p["v"].shape, float("nan"), dtype=torch.bfloat16), p["pool"].clone()
    res_c = compiled(p, out_c, pool_c)
    assert not torch.isnan(out_c).any(), "compiled call left outputs unwritten"
    assert out_c.view(torch.int16).equal(out_e.view(torch.int16))
    assert pool_c.equal(pool_e)
    assert not pool_c.equal(p["pool"]), "the pool was not updated"
    assert torch.allclose(res_c, res_e)


def test_compile_counts_no_graph_break():
    torch._dynamo.reset()
    p = _problem(seed=2)
    explanation = torch._dynamo.explain(_step)(p, torch.empty(p["v"].shape, dtype=torch.bfloat16), p["pool"].clone())
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_eager_decode_does_not_go_through_the_op(monkeypatch):
    flash_kda.register_torch_op()
    calls = []
    monkeypatch.setattr(flash_kda, "_torch_decode_op", lambda *a: calls.append(a))
    p = _problem(seed=3)
    out = torch.full(p["v"].shape, float("nan"), dtype=torch.bfloat16)
    _step(p, out, p["pool"].clone())
    assert not calls
    assert not torch.isnan(out).any()
