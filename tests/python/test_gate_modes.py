"""The gate keyword of flash_kda.fwd on host tensors: softplus (lower_bound=None)
and precomputed log decays against the float64 oracle, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import flash_kda  # noqa: E402


def _inputs(T=40, H=2, seed=0, g_scale=8.0):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(s, generator=gen)  # noqa: E731
    return dict(
        q=r(1, T, H, 128).bfloat16(), k=r(1, T, H, 128).bfloat16(), v=r(1, T, H, 128).bfloat16(),
        g=(r(1, T, H, 128) * g_scale).bfloat16(), beta=r(1, T, H).bfloat16(),
        A_log=torch.full((H,), 2.0), dt_bias=r(H, 128) * 8.0,
        h0=r(1, H, 128, 128) * 0.1,
    )


def _rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("spell", ["none", "keyword"])
def test_softplus_matches_reference(spell):
    x = _inputs()
    out = torch.full_like(x["v"], float("nan"))
    ht = torch.full_like(x["h0"], float("nan"))
    kw = {} if spell == "none" else {"gate": "softplus"}
    flash_kda.fwd(x["q"], x["k"], x["v"], x["g"], x["beta"], 128 ** -0.5, out, x["A_log"], x["dt_bias"], None,
                  x["h0"], ht, **kw)
    ref = torch.empty(out.shape, dtype=torch.float64)
    ref_ht = torch.empty(ht.shape, dtype=torch.float64)
    flash_kda.reference_fwd(x["q"], x["k"], x["v"], x["g"], x["beta"], 128 ** -0.5, ref, x["A_log"], x["dt_bias"],
                            None, x["h0"].double(), ref_ht, **kw)
    assert torch.isfinite(out).all() and torch.isfinite(ht).all()
    assert _rel(out, ref) < 5e-3
    assert _rel(ht, ref_ht) < 5e-3
    # and it is not the lower-bounded gate
    lb_out = torch.empty_like(out)
    flash_kda.fwd(x["q"], x["k"], x["v"], x["g"], x["beta"], 128 ** -0.5, lb_out, x["A_log"], x["dt_bias"], -5.0)
    assert _rel(lb_out, ref) > 1e-2


@pytest.mark.parametrize("gdtype", [torch.bfloat16, torch.float32])
def test_precomputed_matches_reference(gdtype):
    x = _inputs()
    g = -torch.exp(torch.rand(x["g"].shape, generator=torch.Generator().manual_seed(3)) * 15.2 - 6.0)
    g = g.to(gdtype)
    out = torch.full_like(x["v"], float("nan"))
    flash_kda.fwd(x["q"], x["k"], x["v"], g, x["beta"], 128 ** -0.5, out, None, None, None, gate="precomputed")
    ref = torch.empty(out.shape, dtype=torch.float64)
    flash_kda.reference_fwd(x["q"], x["k"], x["v"], g, x["beta"], 128 ** -0.5, ref, None, None, None,
                            gate="precomputed")
    assert torch.isfinite(out).all()
    assert _rel(out, ref) < 5e-3


def _call(x, out, **kw):
    args = dict(A_log=x["A_log"], dt_bias=x["dt_bias"], lower_bound=None)
    args.update(kw)
    flash_kda.fwd(x["q"], x["k"], x["v"], x["g"], x["beta"], 0.1, out, **args)


@pytest.mark.parametrize(
    "kw,exc,argument,text",
    [
        ({"gate": "sigmoid"}, ValueError, "gate", "expected 'lower_bound', 'softplus', 'precomputed' or None"),
        ({"gate": "softplus", "lower_bound": -5.0}, ValueError, "lower_bound", "must be None with the 'softplus'"),
        ({"gate": "lower_bound"}, ValueError, "lower_bound", "needs a value in [-5, 0], got None"),
        ({"gate": "precomputed"}, ValueError, "A_log", "must be None with a precomputed gate"),
        ({"A_log": None}, ValueError, "A_log", "required tensor is missing"),
    ],
)
def test_refusals_name_the_argument_and_write_nothing(kw, exc, argument, text):
    x = _inputs(T=5)
    out = torch.full_like(x["v"], float("nan"))
    with pytest.raises(exc) as info:
        _call(x, out, **kw)
    assert info.value.argument == argument
    assert str(info.value).startswith(argument + ":")
    assert text in str(info.value)
    assert torch.isnan(out).all()


def test_softplus_dt_bias_optional_and_fp32_gate_only_when_precomputed():
    x = _inputs(T=5)
    out = torch.full_like(x["v"], float("nan"))
    _call(x, out, dt_bias=None)
    assert torch.isfinite(out).all()
    with pytest.raises(TypeError, match="g: expected dtype bfloat16, got float32"):
        flash_kda.fwd(x["q"], x["k"], x["v"], x["g"].float(), x["beta"], 0.1, out, x["A_log"], None, None)
