"""The same checks through PyTorch CPU tensors (skipped without torch)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import flash_kda  # noqa: E402
from flash_kda.testing import rel_l2_beyond_rounding  # noqa: E402
from test_numpy_cpu import SHAPES, STATES, run_and_check  # noqa: E402


def to_torch(a: np.ndarray) -> "torch.Tensor":
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.uint16).copy()).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


def to_numpy(t: "torch.Tensor") -> np.ndarray:
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.uint16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


@pytest.mark.parametrize("state", ["none", "h0_ht_fp32", "h0_ht_bf16", "inplace_fp32", "ht_bf16"])
@pytest.mark.parametrize("shape", ["fixed_b2", "varlen_empty_seq"])
def test_torch_cpu_matches_reference(problem_factory, shape, state):
    p = problem_factory(state_dtype=STATES[state][0] or "fp32", seed=17, **SHAPES[shape])
    run_and_check(p, STATES[state], convert=to_torch, to_numpy=to_numpy)


def _torch_problem(problem_factory, **kw):
    p = problem_factory(**kw)
    t = {k: (to_torch(v) if isinstance(v, np.ndarray) else v) for k, v in p.items()}
    return p, t


def test_torch_matches_numpy_bitwise(problem_factory):
    p, t = _torch_problem(problem_factory, seqlens=[13, 30], heads=2, state_dtype="bf16", seed=2)
    out_t = torch.full(t["v"].shape, float("nan"), dtype=torch.bfloat16)
    ht_t = torch.full(t["initial_state"].shape, float("nan"), dtype=torch.bfloat16)
    flash_kda.fwd(t["q"], t["k"], t["v"], t["g"], t["beta"], t["scale"], out_t,
                  A_log=t["A_log"], dt_bias=t["dt_bias"], lower_bound=t["lower_bound"],
                  initial_state=t["initial_state"], final_state=ht_t, cu_seqlens=t["cu_seqlens"])
    out_n = np.full(p["v"].shape, np.nan, dtype=p["v"].dtype)
    ht_n = np.full(p["initial_state"].shape, np.nan, dtype=p["v"].dtype)
    flash_kda.fwd(p["q"], p["k"], p["v"], p["g"], p["beta"], p["scale"], out_n,
                  A_log=p["A_log"], dt_bias=p["dt_bias"], lower_bound=p["lower_bound"],
                  initial_state=p["initial_state"], final_state=ht_n, cu_seqlens=p["cu_seqlens"])
    assert to_numpy(out_t).tobytes() == out_n.tobytes()
    assert to_numpy(ht_t).tobytes() == ht_n.tobytes()


def test_requires_grad_and_inference_mode(problem_factory):
    p, t = _torch_problem(problem_factory, batch=1, seq_len=24, heads=2, state_dtype="fp32")
    q = t["q"].clone().requires_grad_(True)
    A_log = torch.nn.Parameter(t["A_log"].clone())
    out_a = torch.full(t["v"].shape, float("nan"), dtype=torch.bfloat16)
    flash_kda.fwd(q, t["k"], t["v"], t["g"], t["beta"], t["scale"], out_a, A_log,
                  t["dt_bias"], t["lower_bound"], t["initial_state"])
    with torch.inference_mode():
        out_b = torch.full(t["v"].shape, float("nan"), dtype=torch.bfloat16)
        flash_kda.fwd(t["q"], t["k"], t["v"], t["g"], t["beta"], torch.tensor(t["scale"]),
                      out_b, t["A_log"], t["dt_bias"], t["lower_bound"], t["initial_state"])
    assert torch.isfinite(out_a.float()).all()
    assert torch.equal(out_a, out_b)


def test_torch_errors_name_the_argument(problem_factory):
    p, t = _torch_problem(problem_factory, batch=1, seq_len=8, heads=2, state_dtype=None)
    out = torch.full(t["v"].shape, float("nan"), dtype=torch.bfloat16)
    with pytest.raises(TypeError, match=r"^g: expected dtype bfloat16, got float16"):
        flash_kda.fwd(t["q"], t["k"], t["v"], t["g"].half(), t["beta"], 1.0, out,
                      t["A_log"], t["dt_bias"], -5.0)
    with pytest.raises(ValueError, match=r"^v: .*contiguous"):
        flash_kda.fwd(t["q"], t["k"], t["v"].transpose(1, 2).contiguous().transpose(1, 2),
                      t["g"], t["beta"], 1.0, out, t["A_log"], t["dt_bias"], -5.0)
    assert torch.isnan(out.float()).all()


def test_mixed_frameworks(problem_factory):
    """Host tensors of different frameworks may be mixed in one call."""
    p, t = _torch_problem(problem_factory, batch=1, seq_len=16, heads=2, state_dtype="fp32")
    out = np.full(p["v"].shape, np.nan, dtype=p["v"].dtype)
    flash_kda.fwd(t["q"], p["k"], t["v"], p["g"], t["beta"], p["scale"], out, p["A_log"],
                  t["dt_bias"], -5.0, t["initial_state"])
    ref = np.zeros(p["v"].shape)
    flash_kda.reference_fwd(p["q"], p["k"], p["v"], p["g"], p["beta"], p["scale"], ref,
                            p["A_log"], p["dt_bias"], -5.0,
                            p["initial_state"].astype(np.float64))
    assert rel_l2_beyond_rounding(out, ref) < 1e-4
