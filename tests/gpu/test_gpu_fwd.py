"""flash_kda.fwd on a CUDA device against the float64 oracle.

Every call gets fresh random inputs and NaN-poisoned outputs; after it every
output element must be finite (written, no overflow) and within the accuracy
bar of docs/kda.md / shared anchors: relative L2 <= 5e-3 for out and an fp32
final state, <= 8e-3 for a bf16 final state.

Skips (reason "no CUDA device ...") without torch, a CUDA device or a
flash_kda build with kernels for it; see conftest.py.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kda_cases import (  # noqa: E402
    DEVICE,
    DT_MODES,
    GATE_MODES,
    LENGTHS,
    LOWER_BOUNDS,
    STATE_COMBOS,
    TOL_OUT,
    TOL_STATE_FP32,
    Case,
    assert_accurate,
    call_fwd,
    check_finite,
    check_graph_replays,
    cu_seqlens_of,
    make_inputs,
    max_abs_diff,
    new_outputs,
    on_cuda,
    record_result,
    reference,
    rel_l2,
    run_ours,
    sync,
    torch,
)


def _state_id(init, final):
    return f"init{init or 'None'}-final{final or 'None'}"


def _lb_id(lb):
    return f"lb{lb:g}".replace("-", "m")


def _check_case(case: Case):
    inp = make_inputs(case)
    out, final = run_ours(case, inp)
    ref_out, ref_final = reference(inp)
    return assert_accurate(case, inp, out, final, ref_out, ref_final)


# --- the case matrix -------------------------------------------------------------
def _gate_dt_cases():
    """Every (gate logits, dt_bias) pair; T, lower_bound, states and H rotate
    so that each of their values is met several times."""
    params = []
    i = 0
    for gate in GATE_MODES:
        for dt in DT_MODES:
            T = LENGTHS[i % len(LENGTHS)]
            lb = LOWER_BOUNDS[i % len(LOWER_BOUNDS)]
            init, final = STATE_COMBOS[i % len(STATE_COMBOS)]
            case = Case(B=2, T=T, H=2 + i % 3, gate=gate, dt=dt, lower_bound=lb,
                        init=init, final=final, seed=100 + i)
            params.append(pytest.param(case, id=f"g{gate}-dt{dt}-T{T}-{_lb_id(lb)}-{_state_id(init, final)}"))
            i += 1
    return params


@pytest.mark.parametrize("case", _gate_dt_cases())
def test_gate_dt_matrix(case):
    _check_case(case)


def _length_state_cases():
    params = []
    i = 0
    for T in LENGTHS:
        for init, final in STATE_COMBOS:
            case = Case(B=2, T=T, H=2 + i % 3, gate=("uniform", "normal")[i % 2],
                        dt=DT_MODES[i % len(DT_MODES)], lower_bound=LOWER_BOUNDS[i % 3],
                        init=init, final=final, seed=200 + i)
            params.append(pytest.param(case, id=f"T{T}-{_state_id(init, final)}"))
            i += 1
    return params


@pytest.mark.parametrize("case", _length_state_cases())
def test_lengths_and_states(case):
    _check_case(case)


@pytest.mark.parametrize("T", [16, 300])
@pytest.mark.parametrize("lb", LOWER_BOUNDS, ids=_lb_id)
def test_lower_bound(lb, T):
    _check_case(Case(B=2, T=T, H=3, gate="uniform", dt="uniform", lower_bound=lb, seed=300 + T))


VARLEN_ORDERS = {
    "1-16-17-0-300": [1, 16, 17, 0, 300],
    "300-0-17-16-1": [300, 0, 17, 16, 1],
    "0-17-1-300-16-0": [0, 17, 1, 300, 16, 0],
}


def _varlen_cases():
    params = []
    i = 0
    for name, lengths in VARLEN_ORDERS.items():
        for init, final in STATE_COMBOS:
            case = Case(lengths=lengths, H=2 + i % 3, gate=GATE_MODES[i % len(GATE_MODES)],
                        dt=DT_MODES[i % len(DT_MODES)], lower_bound=LOWER_BOUNDS[i % 3],
                        init=init, final=final, seed=400 + i)
            params.append(pytest.param(case, id=f"{name}-{_state_id(init, final)}"))
            i += 1
    return params


@pytest.mark.parametrize("case", _varlen_cases())
def test_varlen(case):
    _check_case(case)


@pytest.mark.parametrize("gate_kind", ["lower_bound", "softplus"])
def test_one_token_rows_where_q_k_cancels(gate_kind):
    """One-token sequences without an initial state, each token's k almost
    orthogonal to its q (cosine 0.02): the output is Mqk[t][t]·u_t alone, and
    Mqk[t][t] = scale·q̂·k̂ must not be formed from bf16-rounded decayed
    operands (that costs ~7e-3 relative here, over the 5e-3 bar; the kernel
    takes it from the L2 norms' fp32 Gram matrix). A 19-token sequence among
    them keeps the general path in the same call."""
    lengths = [1] * 24 + [19] + [1] * 8
    case = Case(lengths=lengths, H=4, gate="normal", dt="uniform", init=None, final="fp32", seed=620,
                gate_kind=gate_kind)
    inp = make_inputs(case)
    q = inp["q"].float()
    k = inp["k"].float()
    q_hat = q / q.norm(dim=-1, keepdim=True)
    k_perp = k - (k * q_hat).sum(-1, keepdim=True) * q_hat
    cosine = 0.02
    k_new = k.norm(dim=-1, keepdim=True) * (
        cosine * q_hat + (1 - cosine ** 2) ** 0.5 * k_perp / k_perp.norm(dim=-1, keepdim=True))
    inp["k"] = k_new.to(torch.bfloat16).contiguous()
    kb = inp["k"].float()
    realised = (q_hat * kb / kb.norm(dim=-1, keepdim=True)).sum(-1).abs()
    assert float(realised.max()) < 0.03, "the test's inputs lost their near-orthogonality to bf16 rounding"
    out, final = run_ours(case, inp)
    ref_out, ref_final = reference(inp)
    assert_accurate(case, inp, out, final, ref_out, ref_final, f"q·k cancelling, {gate_kind}")


LARGE_CASES = {
    "B1-T8192-H8": Case(B=1, T=8192, H=8, gate="normal", dt="uniform", seed=500),
    "varlen6-H4": Case(lengths=[1300, 547, 2048, 963, 271, 3063], H=4, gate="uniform", dt="uniform", seed=501),
    "B4-T1000-H4": Case(B=4, T=1000, H=4, gate="normal", dt="uniform", seed=502),
    # More sequences than the device check's threads (its longest-first sort
    # loops), lengths 0..40 in random order with repeats and empty ones.
    "varlen1500-H2": Case(lengths=[(n * 7919) % 41 for n in range(1500)], H=2, gate="uniform", dt="uniform",
                          seed=503),
}


@pytest.mark.parametrize("name", list(LARGE_CASES))
def test_large(name):
    _check_case(LARGE_CASES[name])


@pytest.mark.parametrize("lb", [-5.0, 0.0], ids=_lb_id)
@pytest.mark.parametrize("dt", ["-8", "+8"])
@pytest.mark.parametrize("gate", ["-8", "+8", "pm8"])
def test_extreme_gates_finite(gate, dt, lb):
    """Gate logits +-8 with dt_bias +-8: the strongest and weakest decays
    (and, with pm8, both alternating per channel) must stay finite and accurate."""
    _check_case(Case(B=2, T=300, H=2, gate=gate, dt=dt, lower_bound=lb, seed=600))


@pytest.mark.parametrize("init,final", [(None, "fp32"), ("fp32", "fp32"), ("bf16", "bf16"), (None, None)],
                         ids=lambda x: str(x))
@pytest.mark.parametrize("layout", ["fixed", "varlen"])
def test_zero_tokens(layout, init, final):
    """T = 0: nothing to compute; final_state = initial state (or zeros). A
    refusal with ValueError is also accepted (documented precondition)."""
    if layout == "fixed":
        case = Case(B=2, T=0, H=2, init=init, final=final, seed=650)
    else:
        case = Case(lengths=[0, 0, 0], H=2, init=init, final=final, seed=651)
    inp = make_inputs(case)
    out, fs = new_outputs(case, inp)
    try:
        call_fwd(inp, out, fs)
    except ValueError as e:
        pytest.skip(f"T = 0 refused with ValueError: {e}")
    sync()
    _, ref_final = reference(inp)
    if fs is not None:
        check_finite(out, fs, "T=0")
        assert rel_l2(fs, ref_final) <= TOL_STATE_FP32


# --- the standard accuracy case ---------------------------------------------------
def test_standard_accuracy():
    """shared anchors' standard case: B=2, T=300, H=4, q/k/v/g/beta ~ N(0,1)
    bf16, fp32 initial state ~ N(0, 0.1^2), fp32 final state, lower_bound=-5.
    A_log and dt_bias ~ U(0, 1) (as in FlashKDA's own benchmark). FLA: 4.1e-3 /
    2.8e-3; FlashKDA: 5.7e-3 / 5.2e-3 (output / final state)."""
    per_seed = []
    for seed in (0, 1, 2):
        case = Case(B=2, T=300, H=4, gate="unit_normal", dt="uniform01", a_log="uniform01",
                    lower_bound=-5.0, init="fp32", final="fp32", state_std=0.1, seed=seed)
        inp = make_inputs(case)
        out, fs = run_ours(case, inp)
        ref_out, ref_final = reference(inp)
        check_finite(out, fs, "standard case")
        per_seed.append({"seed": seed, "out_rel_l2": rel_l2(out, ref_out),
                         "final_state_rel_l2": rel_l2(fs, ref_final)})
    worst_out = max(r["out_rel_l2"] for r in per_seed)
    worst_state = max(r["final_state_rel_l2"] for r in per_seed)
    summary = {
        "case": "B=2 T=300 H=4, q/k/v/g/beta ~ N(0,1) bf16, h0 fp32 ~ N(0,0.1^2), "
                "A_log, dt_bias ~ U(0,1), lower_bound=-5, fp32 final state",
        "out_rel_l2": per_seed[0]["out_rel_l2"],
        "final_state_rel_l2": per_seed[0]["final_state_rel_l2"],
        "worst_over_seeds": {"out_rel_l2": worst_out, "final_state_rel_l2": worst_state},
        "per_seed": per_seed,
        "bar": {"out": TOL_OUT, "final_state": TOL_STATE_FP32},
        "anchors": {"FLA": {"out": 4.1e-3, "final_state": 2.8e-3},
                    "FlashKDA": {"out": 5.7e-3, "final_state": 5.2e-3}},
    }
    print(f"standard accuracy case: out {per_seed[0]['out_rel_l2']:.3e}, final state "
          f"{per_seed[0]['final_state_rel_l2']:.3e} (worst over 3 seeds {worst_out:.3e} / {worst_state:.3e}; "
          f"FLA 4.1e-3 / 2.8e-3, FlashKDA 5.7e-3 / 5.2e-3)")
    record_result("standard", summary)
    assert worst_out <= TOL_OUT, summary
    assert worst_state <= TOL_STATE_FP32, summary


# --- properties ---------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["fixed", "varlen"])
def test_determinism(layout):
    if layout == "fixed":
        case = Case(B=3, T=333, H=4, seed=700)
    else:
        case = Case(lengths=[1300, 1, 0, 547, 17], H=4, seed=701)
    inp = make_inputs(case)
    out1, fs1 = run_ours(case, inp)
    out2, fs2 = run_ours(case, inp)
    check_finite(out1, fs1, "determinism")
    assert torch.equal(out1, out2), f"out differs between two identical calls (max |diff| {max_abs_diff(out1, out2)})"
    assert torch.equal(fs1, fs2), f"final_state differs between two identical calls (max |diff| {max_abs_diff(fs1, fs2)})"


@pytest.mark.parametrize("gate_kind", ["lower_bound", "softplus"])
@pytest.mark.parametrize("layout", ["fixed", "varlen"])
def test_value_block_widths_agree(layout, gate_kind, monkeypatch):
    """The three compiled widths (1, 2 or 4 CTAs per head, each with 128, 64
    or 32 value rows) compute every value row with the same operations in the
    same order: bit-identical results, and each within the bar of the oracle.
    Lengths cover 1..30 chunks, tails and an empty sequence."""
    extra = {"a_log": "2", "dt": "-8"} if gate_kind == "softplus" else {}
    if layout == "fixed":
        case = Case(B=2, T=333, H=3, gate_kind=gate_kind, seed=710, **extra)
    else:
        case = Case(lengths=[1, 17, 300, 0, 16, 200, 64, 465, 129], H=3, gate_kind=gate_kind, seed=711, **extra)
    inp = make_inputs(case)
    ref_out, ref_final = reference(inp)
    results = {}
    for width in ("128", "64", "32"):
        monkeypatch.setenv("FLASH_KDA_VALUE_BLOCK", width)
        results[width] = run_ours(case, inp)
        assert_accurate(case, inp, *results[width], ref_out, ref_final)
    for width in ("64", "32"):
        for i, what in enumerate(("out", "final_state")):
            a, b = results["128"][i], results[width][i]
            assert torch.equal(a, b), f"{what}: width {width} differs from 128 (max |diff| {max_abs_diff(a, b)})"


def _assert_same(a, b, what):
    """Bit-identical, or at least relative L2 <= 1e-6."""
    if torch.equal(a, b):
        return
    err = rel_l2(a, b)
    print(f"{what}: not bit-identical, rel L2 {err:.3e}, max |diff| {max_abs_diff(a, b):.3e}")
    assert err <= 1e-6, f"{what}: rel L2 {err:.3e} > 1e-6 (max |diff| {max_abs_diff(a, b):.3e})"


def test_batch_independence_varlen():
    """A sequence gives the same output and final state alone and packed among
    others (varlen)."""
    lengths = [17, 300, 1, 64, 0, 129]
    case = Case(lengths=lengths, H=3, seed=800)
    inp = make_inputs(case)
    out, fs = run_ours(case, inp)
    check_finite(out, fs, "packed")
    cu = cu_seqlens_of(lengths)
    for i, n in enumerate(lengths):
        if n == 0:
            _assert_same(fs[i], inp["initial_state"][i], f"seq {i} (empty): final_state == initial_state")
            continue
        alone = dict(inp)
        for name in ("q", "k", "v", "g", "beta"):
            alone[name] = inp[name][:, cu[i]:cu[i + 1]].contiguous()
        alone["initial_state"] = inp["initial_state"][i:i + 1].contiguous()
        alone["cu_seqlens"] = None
        single = Case(B=1, T=n, H=case.H)
        out1, fs1 = run_ours(single, alone)
        _assert_same(out1[0], out[0, cu[i]:cu[i + 1]], f"seq {i} (len {n}) out alone vs packed")
        _assert_same(fs1[0], fs[i], f"seq {i} (len {n}) final_state alone vs packed")
        # the same sequence as a one-sequence varlen call
        alone["cu_seqlens"] = torch.tensor([0, n], dtype=torch.int64, device=DEVICE)
        out2, fs2 = run_ours(Case(lengths=[n], H=case.H), alone)
        _assert_same(out2[0], out[0, cu[i]:cu[i + 1]], f"seq {i} (len {n}) out varlen-of-one vs packed")
        _assert_same(fs2[0], fs[i], f"seq {i} (len {n}) final_state varlen-of-one vs packed")


def test_batch_independence_fixed_vs_varlen():
    """B rows of equal length give the same result as the same rows packed."""
    B, T, H = 3, 300, 2
    case = Case(B=B, T=T, H=H, seed=801)
    inp = make_inputs(case)
    out, fs = run_ours(case, inp)
    packed = dict(inp)
    for name in ("q", "k", "v", "g", "beta"):
        t = inp[name]
        packed[name] = t.reshape(1, B * T, *t.shape[2:]).contiguous()
    packed["cu_seqlens"] = torch.tensor(cu_seqlens_of([T] * B), dtype=torch.int64, device=DEVICE)
    out_p, fs_p = run_ours(Case(lengths=[T] * B, H=H), packed)
    _assert_same(out_p.reshape(out.shape), out, "out fixed vs varlen")
    _assert_same(fs_p, fs, "final_state fixed vs varlen")


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_inplace_state(dtype):
    """final_state may be the very tensor given as initial_state."""
    case = Case(lengths=[40, 0, 17, 300], H=2, init=dtype, final=dtype, seed=900)
    inp = make_inputs(case)
    out_sep, fs_sep = run_ours(case, inp)
    state = inp["initial_state"].clone()
    out_in, _ = new_outputs(case, inp)
    call_fwd(inp, out_in, state, initial_state=state)
    sync()
    check_finite(out_in, state, "in-place")
    _assert_same(out_in, out_sep, "out in-place vs separate")
    _assert_same(state, fs_sep, "final_state in-place vs separate")
    ref_out, ref_final = reference(inp)
    assert_accurate(case, inp, out_in, state, ref_out, ref_final, "in-place vs oracle")


# --- CUDA graph ---------------------------------------------------------------------
@pytest.mark.cuda_only
@pytest.mark.parametrize("layout", ["fixed", "varlen"])
def test_cuda_graph(layout):
    """Capture fwd in a torch.cuda.CUDAGraph, then replay it after copying new
    values (new cu_seqlens contents too, same N and T) into the static inputs."""
    if layout == "fixed":
        cases = [Case(B=2, T=200, H=3, seed=s) for s in (1000, 1001, 1002)]
    else:
        cases = [Case(lengths=ls, H=3, seed=s) for s, ls in
                 ((1010, [100, 1, 99]), (1011, [17, 0, 183]), (1012, [0, 200, 0]))]
    check_graph_replays(call_fwd, cases, "graph replay")


# --- errors -------------------------------------------------------------------------
def _base_error_case():
    case = Case(B=2, T=33, H=2, init="fp32", final="fp32", seed=1100)
    return case, make_inputs(case)


def _mutations():
    """name -> (function(inp, out, fs) -> (inp, out, fs), expected exception types)."""
    V = (ValueError,)
    T = (TypeError,)

    def set_(key, fn):
        def mutate(inp, out, fs):
            inp = dict(inp)
            inp[key] = fn(inp)
            return inp, out, fs
        return mutate

    def out_(fn):
        return lambda inp, out, fs: (inp, fn(out), fs)

    def fs_(fn):
        return lambda inp, out, fs: (inp, out, fn(fs))

    return {
        "q_fp16": (set_("q", lambda i: i["q"].half()), T),
        "k_shape": (set_("k", lambda i: i["k"][:, :-1].contiguous()), V),
        "v_head_64": (set_("v", lambda i: i["v"][..., :64].contiguous()), V),
        "g_fp32": (set_("g", lambda i: i["g"].float()), T),
        "beta_shape": (set_("beta", lambda i: i["beta"][..., :1].contiguous()), V),
        "q_not_contiguous": (set_("q", lambda i: i["q"].transpose(1, 2).contiguous().transpose(1, 2)), V),
        "A_log_shape": (set_("A_log", lambda i: torch.zeros(3, device=DEVICE)), V),
        "A_log_fp64": (set_("A_log", lambda i: i["A_log"].double()), T),
        "dt_bias_shape": (set_("dt_bias", lambda i: i["dt_bias"][:, :64].contiguous()), V),
        "lower_bound_below": (set_("lower_bound", lambda i: -6.0), V),
        "lower_bound_positive": (set_("lower_bound", lambda i: 0.5), V),
        "lower_bound_nan": (set_("lower_bound", lambda i: float("nan")), V),
        "scale_nan": (set_("scale", lambda i: float("nan")), V),
        "initial_state_shape": (set_("initial_state", lambda i: i["initial_state"][:1].contiguous()), V),
        "initial_state_fp16": (set_("initial_state", lambda i: i["initial_state"].half()), T),
        "state_dtype_mismatch": (fs_(lambda fs: torch.full_like(fs, float("nan"), dtype=torch.bfloat16)), T),
        "out_fp32": (out_(lambda out: torch.full_like(out, float("nan"), dtype=torch.float32)), T),
        "out_shape": (out_(lambda out: out[:, :-1].contiguous()), V),
        "cu_seqlens_with_B2": (set_("cu_seqlens", lambda i: torch.tensor([0, 33], dtype=torch.int64, device=DEVICE)), V),
        "q_on_cpu": (set_("q", lambda i: i["q"].cpu()), V),
        "A_log_on_cpu": (set_("A_log", lambda i: i["A_log"].cpu()), V),
        "initial_state_on_cpu": (set_("initial_state", lambda i: i["initial_state"].cpu()), V),
        "out_aliases_q": (lambda inp, out, fs: (inp, inp["q"], fs), V),
    }


MUTATIONS = _mutations() if torch is not None else {}
MUTATION_NAMES = [
    "q_fp16", "k_shape", "v_head_64", "g_fp32", "beta_shape", "q_not_contiguous", "A_log_shape",
    "A_log_fp64", "dt_bias_shape", "lower_bound_below", "lower_bound_positive", "lower_bound_nan",
    "scale_nan", "initial_state_shape", "initial_state_fp16", "state_dtype_mismatch", "out_fp32",
    "out_shape", "cu_seqlens_with_B2", "q_on_cpu", "A_log_on_cpu", "initial_state_on_cpu",
    "out_aliases_q",
]


@pytest.mark.parametrize("name", MUTATION_NAMES)
def test_bad_arguments_raise_and_write_nothing(name):
    if name.endswith("_on_cpu") and not on_cuda():
        pytest.skip("CUDA only (FLASH_KDA_TEST_DEVICE=cpu)")
    case, inp = _base_error_case()
    out, fs = new_outputs(case, inp)
    mutate, expected = MUTATIONS[name]
    bad_inp, bad_out, bad_fs = mutate(inp, out, fs)
    q_before = inp["q"].clone()
    with pytest.raises((ValueError, TypeError)) as info:
        call_fwd(bad_inp, bad_out, bad_fs)
    print(f"{name}: {type(info.value).__name__}: {info.value}")
    assert isinstance(info.value, expected), (
        f"{name}: expected {expected[0].__name__}, got {type(info.value).__name__}: {info.value}")
    sync()
    assert torch.isnan(out).all(), f"{name}: out was written by a refused call"
    assert torch.isnan(fs).all(), f"{name}: final_state was written by a refused call"
    if isinstance(bad_out, torch.Tensor) and bad_out is not out and bad_out.is_floating_point():
        if bad_out.data_ptr() != inp["q"].data_ptr():
            assert torch.isnan(bad_out).all(), f"{name}: the refused out was written"
    assert torch.equal(inp["q"], q_before), f"{name}: q was modified"


BAD_CU_SEQLENS = {
    "decreasing": [0, 20, 10, 64],
    "nonzero_start": [3, 20, 40, 64],
    "short_end": [0, 20, 40, 63],
    "past_end": [0, 20, 40, 65],
    "negative": [0, -5, 40, 64],
}


@pytest.mark.parametrize("name", list(BAD_CU_SEQLENS))
def test_bad_cu_seqlens_contents_give_nan(name):
    """Invalid cu_seqlens contents on the device: the check runs on the device
    (no host sync), so the documented behaviour is that nothing is computed and
    out / final_state are NaN-filled: never a plausible-looking result. A
    refusal with an exception is also accepted. A following valid call must work."""
    case = Case(lengths=[20, 20, 24], H=2, seed=1200)
    inp = make_inputs(case)
    out, fs = new_outputs(case, inp)
    out.zero_()  # finite before the call: the NaN must come from the library
    fs.zero_()
    bad = dict(inp)
    bad["cu_seqlens"] = torch.tensor(BAD_CU_SEQLENS[name], dtype=torch.int64, device=DEVICE)
    try:
        call_fwd(bad, out, fs)
        refused = False
    except (ValueError, RuntimeError) as e:
        print(f"{name}: refused with {type(e).__name__}: {e}")
        refused = True
    sync()
    if refused:  # (the host backend checks cu_seqlens itself and raises) nothing written
        assert (out == 0).all() and (fs == 0).all(), f"{name}: a refused call wrote its outputs"
    else:
        assert torch.isnan(out).all(), (
            f"{name}: {(~torch.isnan(out)).sum().item()} out elements not NaN despite invalid cu_seqlens")
        assert torch.isnan(fs).all(), (
            f"{name}: {(~torch.isnan(fs)).sum().item()} final_state elements not NaN despite invalid cu_seqlens")
    # the library recovers: a valid call with the same outputs is correct
    call_fwd(inp, out, fs)
    sync()
    ref_out, ref_final = reference(inp)
    assert_accurate(case, inp, out, fs, ref_out, ref_final, f"valid call after bad cu_seqlens ({name})")


# --- DLPack producers other than torch ------------------------------------------------
class DLPackOnly:
    """An object that offers nothing but the DLPack protocol (no torch type):
    the path every non-torch producer takes."""

    def __init__(self, tensor):
        self._tensor = tensor

    def __dlpack__(self, *args, **kwargs):
        return self._tensor.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._tensor.__dlpack_device__()


def _wrap_all(inp, out, fs, wrap):
    w = {k: (wrap(v) if isinstance(v, torch.Tensor) else v) for k, v in inp.items()}
    return w, wrap(out), (wrap(fs) if fs is not None else None)


def test_raw_dlpack_objects():
    """Same call with every tensor behind a bare __dlpack__ object: same bits
    as the torch call."""
    case = Case(lengths=[100, 0, 37], H=2, seed=1300)
    inp = make_inputs(case)
    out_t, fs_t = run_ours(case, inp)
    out, fs = new_outputs(case, inp)
    sync()
    w_inp, w_out, w_fs = _wrap_all(inp, out, fs, DLPackOnly)
    call_fwd(w_inp, w_out, w_fs)
    sync()
    check_finite(out, fs, "DLPack objects")
    _assert_same(out, out_t, "out via __dlpack__ objects vs torch")
    _assert_same(fs, fs_t, "final_state via __dlpack__ objects vs torch")


@pytest.mark.cuda_only
def test_cupy_arrays():
    """CuPy arrays through DLPack. CuPy may not hold bfloat16: then the bf16
    tensors go as bare __dlpack__ objects and only the fp32/int64 ones
    (A_log, dt_bias, states, cu_seqlens) are CuPy arrays."""
    cupy = pytest.importorskip("cupy", reason="cupy not installed")
    case = Case(lengths=[100, 0, 37], H=2, seed=1301)
    inp = make_inputs(case)
    out_t, fs_t = run_ours(case, inp)
    out, fs = new_outputs(case, inp)
    sync()

    bf16_via_cupy = True
    try:
        probe = cupy.from_dlpack(inp["q"])
        bf16_via_cupy = probe.dtype.itemsize == 2
    except Exception as e:  # CuPy without bfloat16
        print(f"cupy cannot hold bfloat16 ({type(e).__name__}: {e}); bf16 tensors go as __dlpack__ objects")
        bf16_via_cupy = False

    def wrap(t):
        if t.dtype == torch.bfloat16 and not bf16_via_cupy:
            return DLPackOnly(t)
        return cupy.from_dlpack(t)

    w_inp, w_out, w_fs = _wrap_all(inp, out, fs, wrap)
    assert isinstance(w_inp["A_log"], cupy.ndarray)
    cupy.cuda.runtime.deviceSynchronize()
    call_fwd(w_inp, w_out, w_fs)
    cupy.cuda.runtime.deviceSynchronize()
    sync()
    check_finite(out, fs, "CuPy")
    _assert_same(out, out_t, "out via CuPy vs torch")
    _assert_same(fs, fs_t, "final_state via CuPy vs torch")
    # and a result computed from CuPy-made inputs, not only views of torch ones
    h0 = cupy.asarray(inp["initial_state"].cpu().numpy())
    fs2 = cupy.full(h0.shape, cupy.nan, dtype=cupy.float32)
    w_inp2 = dict(w_inp)
    w_inp2["initial_state"] = h0
    out.fill_(float("nan"))
    sync()
    cupy.cuda.runtime.deviceSynchronize()
    call_fwd(w_inp2, w_out, fs2)
    cupy.cuda.runtime.deviceSynchronize()
    _assert_same(torch.from_dlpack(fs2), fs_t, "final_state into a CuPy-allocated array")
    _assert_same(out, out_t, "out with a CuPy-allocated initial state")

