"""Context parallelism of the CUDA forward (cuda_backend.cpp's segment plan):
a fixed-length sequence cut into P segments, computed as R_j / M_j passes, a
combine S_{j+1} = S_j M_j + R_j and a last pass over all segments. Forced
with FLASH_KDA_SEGMENTS=P (the automatic plan only takes long fixed-length
calls with few (sequence, head) pairs); every result against the float64
oracle with the suite's bar, fresh inputs, NaN-poisoned outputs.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kda_cases import (  # noqa: E402
    Case,
    assert_accurate,
    call_fwd,
    check_finite,
    check_graph_replays,
    make_inputs,
    new_outputs,
    reference,
    run_ours,
    sync,
)


def _check(case, monkeypatch, segments):
    inp = make_inputs(case)
    ref_out, ref_final = reference(inp)
    monkeypatch.setenv("FLASH_KDA_SEGMENTS", str(segments))
    out, final = run_ours(case, inp)
    return assert_accurate(case, inp, out, final, ref_out, ref_final, f"segments={segments}")


@pytest.mark.cuda_only
@pytest.mark.parametrize("segments", [2, 3, 4, 8])
@pytest.mark.parametrize("gate_kind", ["lower_bound", "softplus"])
def test_segments_match_oracle(segments, gate_kind, monkeypatch):
    """T = 1000 is no multiple of the segment length (64-token units): the
    last segment ends in a partial chunk; B = 2 checks the per-sequence slots."""
    extra = {"a_log": "2", "dt": "-8"} if gate_kind == "softplus" else {}
    case = Case(B=2, T=1000, H=3, gate_kind=gate_kind, seed=1200 + segments, **extra)
    _check(case, monkeypatch, segments)


@pytest.mark.cuda_only
def test_segments_value_block_widths(monkeypatch):
    """The segmented passes at each compiled width (the automatic plan picks
    128 for H = 16, narrower blocks for the small cases above): within the
    bar of the oracle, and bit-identical across widths (every value row is
    computed the same way; the transition runs start row v at e_v)."""
    case = Case(B=1, T=900, H=2, seed=1260)
    inp = make_inputs(case)
    ref_out, ref_final = reference(inp)
    monkeypatch.setenv("FLASH_KDA_SEGMENTS", "4")
    results = {}
    for width in ("128", "64", "32"):
        monkeypatch.setenv("FLASH_KDA_VALUE_BLOCK", width)
        results[width] = run_ours(case, inp)
        assert_accurate(case, inp, *results[width], ref_out, ref_final, f"segments, width {width}")
    for width in ("64", "32"):
        for i, what in enumerate(("out", "final_state")):
            a, b = results["128"][i], results[width][i]
            assert a.equal(b), f"{what}: width {width} differs from 128 with segments"


@pytest.mark.cuda_only
@pytest.mark.parametrize("init,final", [(None, None), (None, "fp32"), ("fp32", None), ("bf16", "bf16"),
                                        ("fp32", "fp32")])
def test_segments_state_combinations(init, final, monkeypatch):
    case = Case(B=1, T=777, H=2, init=init, final=final, seed=1210)
    _check(case, monkeypatch, 4)


@pytest.mark.cuda_only
def test_segments_strong_decay_and_long_memory(monkeypatch):
    """Gates near 0 (state carried across all segments almost undecayed) and
    strongly negative: the transition products must stay accurate both ways."""
    for seed, gate, dt in ((1220, "+8", "+8"), (1221, "-8", "-8")):
        case = Case(B=1, T=2048, H=2, gate=gate, dt=dt, lower_bound=-5.0, seed=seed)
        _check(case, monkeypatch, 8)


@pytest.mark.cuda_only
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_segments_inplace_state(dtype, monkeypatch):
    """final_state may alias initial_state: the last pass reads segment 0's
    start from the copy the first pass made, not from the overwritten tensor."""
    case = Case(B=2, T=600, H=2, init=dtype, final=dtype, seed=1230)
    inp = make_inputs(case)
    ref_out, ref_final = reference(inp)
    monkeypatch.setenv("FLASH_KDA_SEGMENTS", "4")
    state = inp["initial_state"].clone()
    out, _ = new_outputs(case, inp)
    call_fwd(inp, out, state, initial_state=state)
    sync()
    check_finite(out, state, "in-place, segments")
    assert_accurate(case, inp, out, state, ref_out, ref_final, "in-place with segments vs oracle")


@pytest.mark.cuda_only
def test_segments_automatic_plan(monkeypatch):
    """B=1, H=2, T=16384: the automatic plan cuts the sequence (2 pairs, long
    chain) with no variable set; the result must meet the same bar."""
    monkeypatch.delenv("FLASH_KDA_SEGMENTS", raising=False)
    case = Case(B=1, T=16384, H=2, seed=1240)
    inp = make_inputs(case)
    ref_out, ref_final = reference(inp)
    out, final = run_ours(case, inp)
    assert_accurate(case, inp, out, final, ref_out, ref_final, "automatic segment plan")


@pytest.mark.cuda_only
def test_segments_cuda_graph(monkeypatch):
    """The segmented call (four launches on the caller's stream) captures and
    replays in a CUDA graph with new inputs."""
    monkeypatch.setenv("FLASH_KDA_SEGMENTS", "3")
    cases = [Case(B=1, T=500, H=2, seed=s) for s in (1250, 1251)]
    check_graph_replays(call_fwd, cases, "graph replay with segments")
