"""fwd on NumPy host tensors against the float64 oracle reference_fwd."""

from __future__ import annotations

import zlib

import ml_dtypes
import numpy as np
import pytest

import flash_kda
from flash_kda.testing import rel_l2, rel_l2_beyond_rounding

BF16 = np.dtype(ml_dtypes.bfloat16)
# Accuracy bar of fwd (fp32, chunked) against the float64 oracle, beyond the
# rounding of the outputs themselves (see rel_l2_beyond_rounding): bf16 out
# and states may differ from the oracle by their own rounding only; fp32
# states are compared with the fp64 state directly.
TOL = 1e-4

SHAPES = {
    "fixed_b2": dict(batch=2, seq_len=37, heads=2),
    "fixed_long": dict(batch=1, seq_len=200, heads=1),
    "varlen": dict(seqlens=[5, 16, 33, 1]),
    "varlen_empty_seq": dict(seqlens=[0, 19, 0, 12]),
}
# (initial state dtype, final state dtype, final_state is initial_state)
STATES = {
    "none": (None, None, False),
    "h0_fp32": ("fp32", None, False),
    "ht_fp32": (None, "fp32", False),
    "h0_ht_fp32": ("fp32", "fp32", False),
    "h0_ht_bf16": ("bf16", "bf16", False),
    "ht_bf16": (None, "bf16", False),
    "inplace_fp32": ("fp32", "fp32", True),
    "inplace_bf16": ("bf16", "bf16", True),
}


def run_and_check(p, state_case, convert=lambda a: a, to_numpy=lambda a: a, heads=2):
    """Runs fwd (through `convert`) and reference_fwd (NumPy) and compares."""
    h0_kind, ht_kind, inplace = state_case
    B, T, H, V, K, N = p["B"], p["T"], p["H"], p["V"], p["K"], p["N"]
    h0 = p["initial_state"] if h0_kind else None
    h0_copy = None if h0 is None else h0.copy()

    out = np.full((B, T, H, V), np.nan, dtype=BF16)
    state_dt = {"fp32": np.float32, "bf16": BF16, None: None}[ht_kind]
    if inplace:
        ht = h0.copy()
    elif ht_kind:
        ht = np.full((N, H, V, K), np.nan, dtype=state_dt)
    else:
        ht = None

    args = [convert(x) if x is not None else None for x in (
        p["q"], p["k"], p["v"], p["g"], p["beta"])]
    out_c = convert(out)
    ht_c = convert(ht) if ht is not None else None
    h0_c = ht_c if inplace else (convert(h0) if h0 is not None else None)
    cu_c = convert(p["cu_seqlens"]) if p["cu_seqlens"] is not None else None
    flash_kda.fwd(*args, p["scale"], out_c, convert(p["A_log"]), convert(p["dt_bias"]),
                  p["lower_bound"], h0_c, ht_c, cu_c)
    out_r = to_numpy(out_c)
    ht_r = to_numpy(ht_c) if ht_c is not None else None

    # The oracle, all in float64.
    ref_out = np.full((B, T, H, V), np.nan)
    ref_ht = np.full((N, H, V, K), np.nan) if ht_kind else None
    ref_h0 = None if h0 is None else h0_copy.astype(np.float64)
    flash_kda.reference_fwd(p["q"], p["k"], p["v"], p["g"], p["beta"], p["scale"], ref_out,
                            p["A_log"], p["dt_bias"], p["lower_bound"], ref_h0, ref_ht,
                            p["cu_seqlens"])
    assert np.isfinite(ref_out).all()

    # Every element written (the NaN poison is gone) and accurate.
    out32 = out_r.astype(np.float32)
    assert np.isfinite(out32).all(), "fwd left elements of out unwritten"
    err = rel_l2_beyond_rounding(out_r, ref_out)
    assert err < TOL, f"out: rel L2 {err:.3g} beyond bf16 rounding of the float64 oracle"
    assert rel_l2(out_r, ref_out) < 5e-3  # bf16 rounding of the output itself
    if ht_kind:
        assert np.isfinite(ht_r.astype(np.float32)).all(), "final_state not fully written"
        if ht_kind == "bf16":
            err = rel_l2_beyond_rounding(ht_r, ref_ht)
            assert rel_l2(ht_r, ref_ht) < 5e-3
        else:
            err = rel_l2(ht_r, ref_ht)
        assert err < TOL, f"final_state: rel L2 {err:.3g} vs the float64 oracle"
        if p["cu_seqlens"] is not None:
            # An empty sequence passes its initial state (or zeros) through.
            lens = np.diff(p["cu_seqlens"])
            for n in np.flatnonzero(lens == 0):
                want = h0_copy[n] if h0 is not None else np.zeros((H, V, K))
                np.testing.assert_array_equal(ht_r[n].astype(np.float64),
                                              want.astype(np.float64))
    if h0 is not None and not inplace:
        assert h0.tobytes() == h0_copy.tobytes(), "initial_state was modified"
    return out_r, ht_r


@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_numpy_matches_reference(problem_factory, shape, state):
    h0_kind = STATES[state][0]
    p = problem_factory(state_dtype=h0_kind or "fp32", seed=zlib.crc32(f"{shape}/{state}".encode()) % 1000,
                        **SHAPES[shape])
    run_and_check(p, STATES[state])


def test_inputs_are_not_modified(problem_factory):
    p = problem_factory(seqlens=[7, 20], state_dtype="bf16")
    before = {k: v.copy() for k, v in p.items() if isinstance(v, np.ndarray)}
    run_and_check(p, ("bf16", "bf16", False))
    for name, arr in before.items():
        assert p[name].tobytes() == arr.tobytes(), name


def test_deterministic(problem_factory):
    p = problem_factory(batch=2, seq_len=50, heads=3, state_dtype="fp32", seed=11)
    a, sa = run_and_check(p, ("fp32", "fp32", False))
    b, sb = run_and_check(p, ("fp32", "fp32", False))
    assert a.tobytes() == b.tobytes() and sa.tobytes() == sb.tobytes()


def test_varlen_equals_separate_calls(problem_factory):
    """Packing sequences with cu_seqlens == running each sequence alone."""
    lens = [3, 17, 40]
    p = problem_factory(seqlens=lens, heads=2, state_dtype="fp32", seed=5)
    packed, packed_ht = run_and_check(p, ("fp32", "fp32", False))
    cu = p["cu_seqlens"]
    for n in range(len(lens)):
        s, e = cu[n], cu[n + 1]
        sl = lambda a: np.ascontiguousarray(a[:, s:e])  # noqa: E731
        out = np.full((1, e - s, 2, 128), np.nan, dtype=BF16)
        ht = np.full((1, 2, 128, 128), np.nan, dtype=np.float32)
        flash_kda.fwd(sl(p["q"]), sl(p["k"]), sl(p["v"]), sl(p["g"]), sl(p["beta"]), p["scale"],
                      out, p["A_log"], p["dt_bias"], p["lower_bound"],
                      np.ascontiguousarray(p["initial_state"][n:n + 1]), ht)
        assert rel_l2(out, packed[:, s:e]) < TOL
        assert rel_l2(ht[0], packed_ht[n]) < TOL


def test_reference_accepts_wide_and_narrow_outputs(problem_factory):
    p = problem_factory(batch=1, seq_len=20, heads=1, state_dtype="fp32")
    args = (p["q"], p["k"], p["v"], p["g"], p["beta"], p["scale"])
    outs = {}
    for dt in (np.float64, np.float32, BF16):
        out = np.full(p["v"].shape, np.nan, dtype=dt)
        flash_kda.reference_fwd(*args, out, p["A_log"], p["dt_bias"], p["lower_bound"],
                                p["initial_state"])
        outs[dt] = out.astype(np.float64)
    assert rel_l2(outs[np.float32], outs[np.float64]) < 1e-6
    assert rel_l2(outs[BF16], outs[np.float64]) < 5e-3
