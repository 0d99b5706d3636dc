"""Persistent CTAs of the CUDA forward (src/cuda/sm90/item_queue.cuh): each
CTA runs a queue of (sequence, head, value block) work items and its prep runs
into the next item while the recurrence finishes the current one. The grid is
at most one CTA per SM, so the suite's small shapes would give every CTA one
item: FLASH_KDA_CTAS=n caps the grid to force many items per CTA, including
empty sequences (no chunks), one-chunk items (the stage ring wraps inside an
item boundary) and partial chunks. Every result against the float64 oracle
with the suite's bar, fresh inputs, NaN-poisoned outputs; and bit-identical
to the uncapped grid (an item is computed the same way wherever it runs).
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
    reference,
    run_ours,
)

# Varlen: the device counter hands out the items (longest sequences first);
# fixed length: the static schedule b, b + G, ...
SHAPES = {
    "varlen_mixed": dict(lengths=[37, 0, 300, 1, 16, 17, 0, 64, 15], H=3),
    "varlen_one_chunk": dict(lengths=[16, 3, 16, 1, 9, 16, 2], H=2),
    "fixed": dict(B=3, T=129, H=3),
}


def _run(case, inp, monkeypatch, ctas, width):
    monkeypatch.setenv("FLASH_KDA_VALUE_BLOCK", width)
    if ctas is None:
        monkeypatch.delenv("FLASH_KDA_CTAS", raising=False)
    else:
        monkeypatch.setenv("FLASH_KDA_CTAS", str(ctas))
    return run_ours(case, inp)


@pytest.mark.cuda_only
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("ctas", [1, 2, 5])
@pytest.mark.parametrize("width", ["128", "32"])
def test_capped_grid_matches_oracle_and_uncapped(shape, ctas, width, monkeypatch):
    case = Case(seed=4100 + ctas, **SHAPES[shape])
    inp = make_inputs(case)
    ref_out, ref_final = reference(inp)
    out, final = _run(case, inp, monkeypatch, ctas, width)
    assert_accurate(case, inp, out, final, ref_out, ref_final, f"{shape}, {ctas} CTAs, width {width}")
    base_out, base_final = _run(case, inp, monkeypatch, None, width)
    assert out.equal(base_out), "out differs from the uncapped grid"
    assert final.equal(base_final), "final_state differs from the uncapped grid"


@pytest.mark.cuda_only
@pytest.mark.parametrize("gate_kind", ["softplus", "precomputed_fp32"])
def test_capped_grid_gate_kinds(gate_kind, monkeypatch):
    extra = {"a_log": "2", "dt": "-8"} if gate_kind == "softplus" else {"gate": "logdecay_mix"}
    case = Case(lengths=[200, 0, 33, 16, 90], H=4, init="bf16", final="bf16", gate_kind=gate_kind, seed=4150,
                **extra)
    inp = make_inputs(case)
    ref_out, ref_final = reference(inp)
    out, final = _run(case, inp, monkeypatch, 3, "128")
    assert_accurate(case, inp, out, final, ref_out, ref_final, f"{gate_kind}, 3 CTAs")


@pytest.mark.cuda_only
def test_capped_grid_graph_replays(monkeypatch):
    """The queue counter is zeroed by the device check on every replay."""
    monkeypatch.setenv("FLASH_KDA_CTAS", "3")
    lengths = [130, 0, 47, 260, 16]
    cases = [Case(lengths=lengths, H=3, seed=4200 + i) for i in range(3)]
    check_graph_replays(lambda inp, out, fs: call_fwd(inp, out, fs), cases, "persistent, 3 CTAs")
