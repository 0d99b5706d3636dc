"""torch.compile and CUDA graphs through torch.ops.flash_kda.fwd on a CUDA device.

Skips (reason "no CUDA device ...") like the rest of tests/gpu.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kda_cases import (  # noqa: E402
    Case,
    assert_accurate,
    call_fwd,
    check_graph_replays,
    make_inputs,
    new_outputs,
    on_cuda,
    reference,
    sync,
    torch,
)


def _step(inp, out, fs):
    call_fwd(inp, out, fs)
    return out.float().square().mean()  # work after the call: the graph continues


@pytest.mark.parametrize("layout", ["fixed", "varlen"])
def test_compile_fullgraph(layout):
    """torch.compile(fullgraph=True) of a function calling flash_kda.fwd: no
    graph break, results equal to the oracle, and a second call with new
    input values is correct too (no stale outputs baked into the graph)."""
    torch._dynamo.reset()
    # inductor on the GPU; the host run of this file (FLASH_KDA_TEST_DEVICE=cpu)
    # checks the test itself without compiling C++.
    compiled = torch.compile(_step, fullgraph=True, backend="inductor" if on_cuda() else "aot_eager")
    for seed in (2000, 2001):
        case = (Case(B=2, T=150, H=3, seed=seed) if layout == "fixed"
                else Case(lengths=[40, 0, 77, 33], H=3, seed=seed))
        inp = make_inputs(case)
        out, fs = new_outputs(case, inp)
        compiled(inp, out, fs)
        sync()
        ref_out, ref_final = reference(inp)
        assert_accurate(case, inp, out, fs, ref_out, ref_final, f"compiled {case.label()}")


@pytest.mark.cuda_only
def test_compiled_function_in_cuda_graph():
    """A torch.compile'd function around flash_kda.fwd captured in a CUDA graph
    replays correctly on new input values."""
    torch._dynamo.reset()
    compiled = torch.compile(_step, fullgraph=True)
    cases = [Case(B=2, T=96, H=2, seed=s) for s in (2100, 2101, 2102)]
    check_graph_replays(compiled, cases, "compiled graph replay")
