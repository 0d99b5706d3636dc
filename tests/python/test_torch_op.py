"""torch.ops.flash_kda.fwd: the custom op behind torch.compile support.

Host tensors here (the CPU backend); the CUDA versions of these checks, with
CUDA graphs, are in tests/gpu/test_gpu_torch_op.py.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import flash_kda  # noqa: E402
from test_torch_cpu import _torch_problem  # noqa: E402


def _args(t, out, final, initial=None):
    return (t["q"], t["k"], t["v"], t["g"], t["beta"], float(t["scale"]), out, t["A_log"],
            t["dt_bias"], float(t["lower_bound"]), t["initial_state"] if initial is None else initial,
            final, t["cu_seqlens"],
            None, None, None, None, None, 0, None)  # serving arguments and gate: all passed (no defaults)


def test_op_is_registered_and_passes_opcheck(problem_factory):
    op = flash_kda.register_torch_op()
    assert op is torch.ops.flash_kda.fwd
    _, t = _torch_problem(problem_factory, seqlens=[5, 0, 20], heads=2, state_dtype="fp32", seed=3)
    out = torch.full(t["v"].shape, float("nan"), dtype=torch.bfloat16)
    final = torch.full(t["initial_state"].shape, float("nan"), dtype=torch.float32)
    # schema, fake tensor, autograd registration and AOT-dispatch checks
    torch.library.opcheck(op, _args(t, out, final))


def _run(fn, t, inplace=False):
    out = torch.full(t["v"].shape, float("nan"), dtype=torch.bfloat16)
    if inplace:
        state = t["initial_state"].clone()
        result = fn(t, out, state, state)
        return out, state, result
    final = torch.full(t["initial_state"].shape, float("nan"), dtype=t["initial_state"].dtype)
    result = fn(t, out, final, t["initial_state"])
    return out, final, result


def _call(t, out, final, initial):
    flash_kda.fwd(t["q"], t["k"], t["v"], t["g"], t["beta"], t["scale"], out,
                  A_log=t["A_log"], dt_bias=t["dt_bias"], lower_bound=t["lower_bound"],
                  initial_state=initial, final_state=final, cu_seqlens=t["cu_seqlens"])
    return out.float().sum() * 2  # something after the call, so the graph continues


@pytest.mark.parametrize("inplace", [False, True], ids=["separate_states", "inplace_state"])
def test_compile_fullgraph_matches_eager(problem_factory, inplace):
    torch._dynamo.reset()
    _, t = _torch_problem(problem_factory, batch=2, seq_len=37, heads=2, state_dtype="fp32", seed=11)
    out_e, final_e, res_e = _run(_call, t, inplace)
    compiled = torch.compile(_call, fullgraph=True, backend="aot_eager")
    out_c, final_c, res_c = _run(compiled, t, inplace)
    assert not torch.isnan(out_c).any(), "compiled call left outputs unwritten"
    assert out_c.view(torch.int16).equal(out_e.view(torch.int16))
    assert final_c.equal(final_e)
    assert torch.allclose(res_c, res_e)


def test_compile_counts_no_graph_break(problem_factory):
    torch._dynamo.reset()
    _, t = _torch_problem(problem_factory, seqlens=[7, 16, 1], heads=2, state_dtype="bf16", seed=12)
    explanation = torch._dynamo.explain(_call)(
        t, torch.empty(t["v"].shape, dtype=torch.bfloat16),
        torch.empty(t["initial_state"].shape, dtype=torch.bfloat16), t["initial_state"])
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_eager_path_does_not_go_through_the_op(problem_factory, monkeypatch):
    """Eagerly, fwd calls the extension directly: the op is for tracing only."""
    flash_kda.register_torch_op()
    _, t = _torch_problem(problem_factory, batch=1, seq_len=9, heads=2, state_dtype="fp32", seed=13)
    calls = []
    monkeypatch.setattr(flash_kda, "_torch_fwd_op", lambda *a: calls.append(a))
    out, final, _ = _run(_call, t)
    assert not calls
    assert not np.isnan(out.float().numpy()).any()
