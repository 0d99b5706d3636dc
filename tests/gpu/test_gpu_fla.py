"""Cross-check against flash-linear-attention's Triton `chunk_kda` on one
mid-size problem (and a varlen one): both are compared with the float64
oracle and with each other.

FLA_FLASH_KDA=0 is set before fla is imported so that FLA's dispatcher does
not route chunk_kda back into flash_kda (which would compare us with
ourselves); a spy on flash_kda.fwd makes sure of it. Skips when fla does not
import ("fla not installed").
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kda_cases import (  # noqa: E402
    TOL_OUT,
    TOL_STATE_FP32,
    Case,
    check_finite,
    import_chunk_kda,
    make_inputs,
    on_cuda,
    record_result,
    reference,
    rel_l2,
    run_ours,
    sync,
    torch,
)

TOL_VS_FLA = 1e-2


def _chunk_kda():
    chunk_kda, note = import_chunk_kda()
    if chunk_kda is None:
        pytest.skip(note)
    if note:
        print(f"fla: {note}")
    return chunk_kda


def run_fla(chunk_kda, inp, monkeypatch=None):
    """FLA's Triton chunk_kda with the arguments of its flash_kda path
    (bench/warm_fla.py also calls it, without monkeypatch, to compile FLA's
    kernels for these shapes)."""
    calls = []
    if monkeypatch is not None:
        import flash_kda

        real = flash_kda.fwd

        def spy(*args, **kwargs):
            calls.append(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(flash_kda, "fwd", spy)
    with torch.no_grad():
        o, ht = chunk_kda(
            q=inp["q"], k=inp["k"], v=inp["v"], g=inp["g"], beta=inp["beta"],
            scale=inp["scale"],
            initial_state=inp["initial_state"],
            output_final_state=True,
            use_qk_l2norm_in_kernel=True,
            use_gate_in_kernel=True,
            use_beta_sigmoid_in_kernel=True,
            safe_gate=True,
            lower_bound=inp["lower_bound"],
            state_v_first=True,
            cu_seqlens=inp["cu_seqlens"],
            A_log=inp["A_log"],
            dt_bias=inp["dt_bias"].reshape(-1),  # FLA documents dt_bias as [H * K]
        )
    sync()
    if monkeypatch is not None:
        monkeypatch.undo()
        assert not calls, "FLA dispatched chunk_kda to flash_kda (FLA_FLASH_KDA=0 not honoured)"
    return o, ht


CASES = {
    "B1-T2048-H16": Case(B=1, T=2048, H=16, gate="unit_normal", dt="uniform01", a_log="uniform01",
                         lower_bound=-5.0, init="fp32", final="fp32", state_std=0.1, seed=2000),
    "varlen-300-17-1000-731-H8": Case(lengths=[300, 17, 1000, 731], H=8, gate="unit_normal",
                                      dt="uniform01", a_log="uniform01", lower_bound=-5.0,
                                      init="fp32", final="fp32", state_std=0.1, seed=2001),
}


@pytest.mark.parametrize("name", list(CASES))
def test_against_fla_chunk_kda(name, monkeypatch):
    if not on_cuda():
        pytest.skip("CUDA only (FLASH_KDA_TEST_DEVICE=cpu)")
    chunk_kda = _chunk_kda()
    case = CASES[name]
    inp = make_inputs(case)
    out, fs = run_ours(case, inp)
    check_finite(out, fs, "ours")
    o_fla, ht_fla = run_fla(chunk_kda, inp, monkeypatch)
    assert tuple(o_fla.shape) == tuple(out.shape)
    assert tuple(ht_fla.shape) == tuple(fs.shape), f"FLA final state shape {tuple(ht_fla.shape)}"
    ref_out, ref_final = reference(inp)
    r = {
        "case": name,
        "ours_vs_ref": {"out": rel_l2(out, ref_out), "final_state": rel_l2(fs, ref_final)},
        "fla_vs_ref": {"out": rel_l2(o_fla, ref_out), "final_state": rel_l2(ht_fla, ref_final)},
        "ours_vs_fla": {"out": rel_l2(out, o_fla), "final_state": rel_l2(fs, ht_fla)},
    }
    print(f"[{name}] ours vs oracle: out {r['ours_vs_ref']['out']:.3e} state {r['ours_vs_ref']['final_state']:.3e}; "
          f"FLA vs oracle: out {r['fla_vs_ref']['out']:.3e} state {r['fla_vs_ref']['final_state']:.3e}; "
          f"ours vs FLA: out {r['ours_vs_fla']['out']:.3e} state {r['ours_vs_fla']['final_state']:.3e}")
    record_result(f"fla_crosscheck_{name}", r)
    assert r["ours_vs_ref"]["out"] <= TOL_OUT, r
    assert r["ours_vs_ref"]["final_state"] <= TOL_STATE_FP32, r
    assert r["ours_vs_fla"]["out"] <= TOL_VS_FLA, r
    assert r["ours_vs_fla"]["final_state"] <= TOL_VS_FLA, r
