"""Shared helpers of the GPU tests and the benchmark: availability, random
inputs, the float64 oracle, error measures and the results file.

Nothing here needs a GPU to import: torch and flash_kda are optional, and
`cuda_status()` says why the GPU suite cannot run ("no CUDA device: ...").

Inputs are drawn on the host with a seeded torch.Generator (so a case is the
same on every machine), then moved to the device. The oracle is
`flash_kda.reference_fwd` on host tensors: the bf16 inputs as they are, a
float64 `out`, and float64 states (the oracle requires both states to share a
dtype, so a bf16/fp32 initial state is widened exactly to float64).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from typing import Optional, Sequence

try:  # torch is optional: without it every GPU test skips
    import torch
except Exception:  # pragma: no cover - depends on the machine
    torch = None

HEAD_DIM = 128

# The device the suite runs on. "cuda" always, except to check the suite's own
# logic on a machine without a GPU: FLASH_KDA_TEST_DEVICE=cpu runs the same
# cases through the CPU backend (CUDA-only tests then skip).
DEVICE = os.environ.get("FLASH_KDA_TEST_DEVICE", "cuda")

# --- the case vocabulary -------------------------------------------------------
# Gate logits (before dt_bias and the sigmoid): constants, U(-8, 8), N(0, 8^2).
GATE_MODES = ("-8", "0", "+8", "uniform", "normal")
# dt_bias: constants, or U(-8, 8) per (head, channel).
DT_MODES = ("0", "+4", "-4", "+8", "-8", "uniform")
LOWER_BOUNDS = (-5.0, -1.0, 0.0)
LENGTHS = (1, 15, 16, 17, 300)
# (initial_state dtype, final_state dtype); the library requires equal dtypes
# when both are given.
STATE_COMBOS = (
    (None, None),
    (None, "bf16"),
    (None, "fp32"),
    ("bf16", None),
    ("fp32", None),
    ("bf16", "bf16"),
    ("fp32", "fp32"),
)

# Accuracy bar (relative L2 against the float64 oracle).
TOL_OUT = 5e-3
TOL_STATE_FP32 = 5e-3
TOL_STATE_BF16 = 8e-3
# Per-sequence bound: looser, it only catches one sequence being wrong inside
# a batch whose global error is dominated by the others.
TOL_PER_SEQUENCE = 1e-2


def state_tolerance(dtype_name: Optional[str]) -> float:
    return TOL_STATE_BF16 if dtype_name == "bf16" else TOL_STATE_FP32


# --- availability --------------------------------------------------------------
_STATUS: Optional[tuple] = None


def cuda_status() -> tuple:
    """(True, "") when torch sees a CUDA device and flash_kda has kernels for
    it; else (False, reason) with a reason that starts "no CUDA device"."""
    global _STATUS
    if _STATUS is not None:
        return _STATUS
    if torch is None:
        _STATUS = (False, "no CUDA device: torch is not installed")
        return _STATUS
    if DEVICE == "cpu":
        try:
            __import__("flash_kda")
        except Exception as e:
            _STATUS = (False, f"FLASH_KDA_TEST_DEVICE=cpu but flash_kda does not import ({e!r})")
            return _STATUS
        _STATUS = (True, "")
        return _STATUS
    try:
        has_cuda = torch.cuda.is_available()
    except Exception as e:  # pragma: no cover
        _STATUS = (False, f"no CUDA device: torch.cuda.is_available() raised {e!r}")
        return _STATUS
    if not has_cuda:
        _STATUS = (False, "no CUDA device: torch.cuda.is_available() is False")
        return _STATUS
    try:
        import flash_kda
    except Exception as e:
        _STATUS = (False, f"no CUDA device usable: flash_kda does not import ({e!r})")
        return _STATUS
    try:
        ok = bool(flash_kda.cuda_available())
    except Exception as e:
        _STATUS = (False, f"no CUDA device usable: flash_kda.cuda_available() raised {e!r}")
        return _STATUS
    if not ok:
        info = ""
        try:
            info = flash_kda.build_info()
        except Exception:
            pass
        _STATUS = (False, f"no CUDA device usable: flash_kda.cuda_available() is False ({info})")
        return _STATUS
    _STATUS = (True, "")
    return _STATUS


def on_cuda() -> bool:
    return DEVICE != "cpu"


def sync() -> None:
    """Wait for the device (no-op on the CPU)."""
    if on_cuda():
        torch.cuda.synchronize()


# --- cases ---------------------------------------------------------------------
@dataclasses.dataclass
class Case:
    """One problem. `lengths` given = varlen (B = 1, cu_seqlens); else B x T."""

    B: int = 2
    T: int = 300
    H: int = 4
    lengths: Optional[Sequence[int]] = None
    gate: str = "normal"
    dt: str = "uniform"
    lower_bound: float = -5.0
    init: Optional[str] = "fp32"
    final: Optional[str] = "fp32"
    seed: int = 0
    a_log: str = "uniform_pm1"  # "uniform_pm1": U(-1, 1); "uniform01": U(0, 1)
    state_std: float = 0.1  # initial state ~ N(0, state_std^2)
    scale: Optional[float] = None  # None = K ** -0.5
    # The gate (flash_kda.fwd's `gate`): "lower_bound" (FlashKDA's), "softplus"
    # (Kimi-Linear's unbounded gate), "precomputed" / "precomputed_fp32" (g is
    # the log decay, bf16 / fp32; gate mode "logdecay_mix" draws it).
    gate_kind: str = "lower_bound"

    @property
    def varlen(self) -> bool:
        return self.lengths is not None

    @property
    def total_tokens(self) -> int:
        return int(sum(self.lengths)) if self.varlen else self.T

    @property
    def num_sequences(self) -> int:
        return len(self.lengths) if self.varlen else self.B

    def label(self) -> str:
        shape = f"varlen{list(self.lengths)}" if self.varlen else f"B{self.B}T{self.T}"
        gate = f"lb{self.lower_bound:g}" if self.gate_kind == "lower_bound" else f"{self.gate_kind}_A{self.a_log}"
        return (f"{shape}_H{self.H}_g{self.gate}_dt{self.dt}_{gate}"
                f"_init{self.init}_final{self.final}_s{self.seed}")


def _torch_dtype(name: Optional[str]):
    return {"bf16": torch.bfloat16, "fp32": torch.float32, "fp64": torch.float64}[name]


def _gate_logits(mode: str, shape, gen) -> "torch.Tensor":
    if mode in ("-8", "0", "+8", "-20", "+20"):
        return torch.full(shape, float(mode), dtype=torch.float32)
    if mode == "logdecay_mix":  # precomputed log decays -exp(U(-6, 9.2)): -2.5e-3 .. -1e4
        return -torch.exp(torch.rand(shape, generator=gen) * 15.2 - 6.0)
    if mode == "uniform":
        return torch.rand(shape, generator=gen) * 16.0 - 8.0
    if mode == "normal":
        return torch.randn(shape, generator=gen) * 8.0
    if mode == "unit_normal":  # N(0, 1): the standard accuracy case
        return torch.randn(shape, generator=gen)
    if mode == "pm8":  # random sign, magnitude 8: alternating extreme decays
        return (torch.randint(0, 2, shape, generator=gen).float() * 2.0 - 1.0) * 8.0
    raise ValueError(f"unknown gate mode {mode!r}")


def _dt_bias(mode: str, H: int, gen) -> "torch.Tensor":
    if mode == "uniform":
        return torch.rand((H, HEAD_DIM), generator=gen) * 16.0 - 8.0
    if mode == "uniform01":
        return torch.rand((H, HEAD_DIM), generator=gen)
    return torch.full((H, HEAD_DIM), float(mode), dtype=torch.float32)


def _a_log(mode: str, H: int, gen) -> "torch.Tensor":
    if mode == "uniform_pm1":
        return torch.rand((H,), generator=gen) * 2.0 - 1.0
    if mode == "uniform01":
        return torch.rand((H,), generator=gen)
    try:  # a constant, e.g. "4"
        return torch.full((H,), float(mode), dtype=torch.float32)
    except ValueError:
        raise ValueError(f"unknown A_log mode {mode!r}") from None


def cu_seqlens_of(lengths: Sequence[int]) -> list:
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + int(n))
    return cu


def make_inputs(case: Case, device=None) -> dict:
    """Fresh random inputs for `case` on `device` (a dict of fwd's arguments,
    minus out and final_state). Drawn on the host with a seeded generator."""
    device = DEVICE if device is None else device
    gen = torch.Generator().manual_seed(1_000_003 * case.seed + 12345)
    if case.varlen:
        B, T = 1, case.total_tokens
    else:
        B, T = case.B, case.T
    H, D = case.H, HEAD_DIM
    N = case.num_sequences

    def randn_bf16(*shape):
        return torch.randn(shape, generator=gen).to(torch.bfloat16)

    inp = {
        "q": randn_bf16(B, T, H, D),
        "k": randn_bf16(B, T, H, D),
        "v": randn_bf16(B, T, H, D),
        "g": _gate_logits(case.gate, (B, T, H, D), gen).to(
            torch.float32 if case.gate_kind == "precomputed_fp32" else torch.bfloat16),
        "beta": randn_bf16(B, T, H),
        "A_log": _a_log(case.a_log, H, gen).float(),
        "dt_bias": None if case.dt == "none" else _dt_bias(case.dt, H, gen).float(),
        "initial_state": None,
        "cu_seqlens": None,
    }
    if case.gate_kind.startswith("precomputed"):
        inp["A_log"] = inp["dt_bias"] = None
    if case.init is not None:
        h0 = torch.randn((N, H, D, D), generator=gen) * case.state_std
        inp["initial_state"] = h0.to(_torch_dtype(case.init))
    if case.varlen:
        inp["cu_seqlens"] = torch.tensor(cu_seqlens_of(case.lengths), dtype=torch.int64)
    out = {k: (None if v is None else v.to(device).contiguous()) for k, v in inp.items()}
    out["scale"] = case.scale if case.scale is not None else HEAD_DIM ** -0.5
    out["lower_bound"] = float(case.lower_bound) if case.gate_kind == "lower_bound" else None
    out["gate"] = case.gate_kind.replace("_fp32", "")
    return out


def nan_like(shape, dtype, device=None):
    device = DEVICE if device is None else device
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def new_outputs(case: Case, inp: dict) -> tuple:
    """NaN-poisoned `out` and (if the case has one) `final_state`."""
    q = inp["q"]
    out = nan_like(tuple(q.shape), torch.bfloat16, q.device)
    final = None
    if case.final is not None:
        N, H = case.num_sequences, case.H
        final = nan_like((N, H, HEAD_DIM, HEAD_DIM), _torch_dtype(case.final), q.device)
    return out, final


def call_fwd(inp: dict, out, final_state, initial_state="same"):
    """flash_kda.fwd with FLA's calling convention (7 positional arguments,
    then keywords)."""
    import flash_kda

    h0 = inp["initial_state"] if initial_state == "same" else initial_state
    return flash_kda.fwd(
        inp["q"], inp["k"], inp["v"], inp["g"], inp["beta"], inp["scale"], out,
        A_log=inp["A_log"], dt_bias=inp["dt_bias"], lower_bound=inp["lower_bound"],
        initial_state=h0, final_state=final_state, cu_seqlens=inp["cu_seqlens"],
        **({} if inp.get("gate", "lower_bound") == "lower_bound" else {"gate": inp["gate"]}),
    )


def run_ours(case: Case, inp: dict) -> tuple:
    """Poison the outputs, run flash_kda.fwd on the device, synchronise."""
    out, final = new_outputs(case, inp)
    call_fwd(inp, out, final)
    sync()
    return out, final


def reference(inp: dict, *, with_state: bool = True) -> tuple:
    """The float64 oracle on host copies of `inp`: (out fp64, final_state fp64)."""
    import flash_kda

    def host(t):
        return None if t is None else t.detach().to("cpu").contiguous()

    q = host(inp["q"])
    B, T, H, D = q.shape
    cu = host(inp["cu_seqlens"])
    N = (cu.numel() - 1) if cu is not None else B
    out = torch.empty((B, T, H, D), dtype=torch.float64)
    final = torch.empty((N, H, D, D), dtype=torch.float64) if with_state else None
    h0 = host(inp["initial_state"])
    if h0 is not None:
        h0 = h0.to(torch.float64)
    flash_kda.reference_fwd(
        q, host(inp["k"]), host(inp["v"]), host(inp["g"]), host(inp["beta"]), inp["scale"], out,
        A_log=host(inp["A_log"]), dt_bias=host(inp["dt_bias"]), lower_bound=inp["lower_bound"],
        initial_state=h0, final_state=final, cu_seqlens=cu, gate=inp.get("gate"),
    )
    return out, final


# --- error measures ------------------------------------------------------------
def rel_l2(x, ref) -> float:
    """||x - ref|| / ||ref|| in float64 on the host; 0/0 = 0, e/0 = inf."""
    x = x.detach().to("cpu", torch.float64)
    ref = ref.detach().to("cpu", torch.float64)
    num = torch.linalg.vector_norm(x - ref).item()
    den = torch.linalg.vector_norm(ref).item()
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


def max_abs_diff(x, y) -> float:
    if x.numel() == 0:
        return 0.0
    return (x.detach().to("cpu", torch.float64) - y.detach().to("cpu", torch.float64)).abs().max().item()


def sequence_slices(case_or_inp) -> list:
    """Per-sequence views: list of (name, out_index) where out_index selects the
    sequence's tokens of `out` ([b] or [0, start:end])."""
    if isinstance(case_or_inp, dict):
        cu = case_or_inp["cu_seqlens"]
        B = case_or_inp["q"].shape[0]
        cu = None if cu is None else [int(x) for x in cu.to("cpu").tolist()]
    else:
        cu = cu_seqlens_of(case_or_inp.lengths) if case_or_inp.varlen else None
        B = case_or_inp.B
    if cu is None:
        return [(f"b{b}", (b,)) for b in range(B)]
    return [(f"seq{i}[{cu[i]}:{cu[i+1]}]", (0, slice(cu[i], cu[i + 1]))) for i in range(len(cu) - 1)]


@dataclasses.dataclass
class Errors:
    out: float
    state: Optional[float]
    worst_seq_out: float = 0.0
    worst_seq_state: float = 0.0
    worst_seq_name: str = ""

    def __str__(self) -> str:
        s = f"out rel L2 {self.out:.3e}"
        if self.state is not None:
            s += f", final_state rel L2 {self.state:.3e}"
        s += (f", worst sequence {self.worst_seq_name}: out {self.worst_seq_out:.3e}"
              f" state {self.worst_seq_state:.3e}")
        return s


def compare(inp: dict, out, final, ref_out, ref_final) -> Errors:
    """Errors of our outputs against the oracle, globally and per sequence."""
    err = Errors(out=rel_l2(out, ref_out), state=None)
    if final is not None:
        err.state = rel_l2(final, ref_final)
    for n, (name, idx) in enumerate(sequence_slices(inp)):
        eo = rel_l2(out[idx], ref_out[idx]) if out[idx].numel() else 0.0
        es = rel_l2(final[n], ref_final[n]) if final is not None else 0.0
        if max(eo, es) >= max(err.worst_seq_out, err.worst_seq_state):
            err.worst_seq_out, err.worst_seq_state, err.worst_seq_name = eo, es, name
    return err


def check_finite(out, final, what: str = "") -> None:
    """Every element written (the NaN poison gone) and no Inf anywhere."""
    bad_out = (~torch.isfinite(out)).sum().item()
    assert bad_out == 0, f"{what}: {bad_out} of {out.numel()} out elements are NaN/Inf (unwritten or overflow)"
    if final is not None:
        bad = (~torch.isfinite(final)).sum().item()
        assert bad == 0, f"{what}: {bad} of {final.numel()} final_state elements are NaN/Inf"


# The largest errors assert_accurate has seen in this process, with their
# cases: conftest.py records them (accuracy.json, "worst_checked") so that a
# change of numerics shows how close the whole matrix comes to the bar, not
# only the standard case.
WORST_SEEN = {"out": (0.0, ""), "state": (0.0, "")}


def assert_accurate(case: Case, inp: dict, out, final, ref_out, ref_final, what: str = "") -> Errors:
    what = what or case.label()
    check_finite(out, final, what)
    err = compare(inp, out, final, ref_out, ref_final)
    print(f"[{what}] {err}")
    for key, value in (("out", err.out), ("state", err.state or 0.0)):
        if value > WORST_SEEN[key][0]:
            WORST_SEEN[key] = (float(value), what)
    assert err.out <= TOL_OUT, f"{what}: out rel L2 {err.out:.3e} > {TOL_OUT:g} ({err})"
    if final is not None:
        tol = state_tolerance(case.final)
        assert err.state <= tol, f"{what}: final_state rel L2 {err.state:.3e} > {tol:g} ({err})"
    assert err.worst_seq_out <= TOL_PER_SEQUENCE and err.worst_seq_state <= TOL_PER_SEQUENCE, (
        f"{what}: one sequence is off: {err}")
    return err


def check_graph_replays(step, cases: Sequence[Case], what: str) -> None:
    """CUDA-graph check shared by the suites: warm `step(inputs, out, final)`
    up on a side stream with cases[0]'s inputs, capture it in a
    torch.cuda.CUDAGraph, then for each later case copy fresh inputs into the
    captured tensors (same shapes), NaN-poison the outputs, replay and compare
    with the oracle."""
    static = make_inputs(cases[0])
    out, fs = new_outputs(cases[0], static)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step(static, out, fs)
    torch.cuda.current_stream().wait_stream(side)
    sync()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step(static, out, fs)
    sync()
    for case in cases[1:]:
        for name, t in make_inputs(case).items():
            if isinstance(t, torch.Tensor):
                static[name].copy_(t)
        out.fill_(float("nan"))
        if fs is not None:
            fs.fill_(float("nan"))
        graph.replay()
        sync()
        ref_out, ref_final = reference(static)
        assert_accurate(case, static, out, fs, ref_out, ref_final, f"{what} {case.label()}")


# --- FLA -------------------------------------------------------------------------
def import_chunk_kda():
    """FLA's Triton chunk_kda, imported so that it cannot dispatch back into
    flash_kda (FLA_FLASH_KDA=0, set before the import). Returns
    (chunk_kda, note) or (None, reason); the reason starts "fla not installed"
    when the package is absent.

    fla/__init__.py also imports fla.layers / fla.models (and so transformers)
    when the flash-linear-attention wheel is installed; if that fails, the
    kernels are imported again without running fla/__init__.py."""
    import importlib
    import importlib.util
    import sys
    import types

    os.environ["FLA_FLASH_KDA"] = "0"
    try:
        chunk_kda = importlib.import_module("fla.ops.kda").chunk_kda
        return chunk_kda, ""
    except ModuleNotFoundError as e:
        if e.name == "fla":
            return None, f"fla not installed ({e})"
        first = e
    except Exception as e:
        first = e
    try:
        for name in [m for m in sys.modules if m == "fla" or m.startswith("fla.")]:
            del sys.modules[name]
        spec = importlib.util.find_spec("fla")
        if spec is None or not spec.submodule_search_locations:
            return None, f"fla not installed ({first!r})"
        pkg = types.ModuleType("fla")
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__file__ = spec.origin
        try:
            from importlib.metadata import version

            pkg.__version__ = version("fla-core")
        except Exception:
            pkg.__version__ = "0.0.0"
        sys.modules["fla"] = pkg
        chunk_kda = importlib.import_module("fla.ops.kda").chunk_kda
        return chunk_kda, f"imported without fla/__init__.py, which raised {first!r}"
    except Exception as e:
        return None, f"fla not installed or broken: {first!r}; without fla/__init__.py: {e!r}"


# --- results file ----------------------------------------------------------------
def record_result(key: str, value) -> Optional[str]:
    """Merge {key: value} into $FLASH_KDA_RESULTS_DIR/accuracy.json (if set)."""
    directory = os.environ.get("FLASH_KDA_RESULTS_DIR")
    if not directory:
        return None
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "accuracy.json")
    data = {}
    if os.path.exists(path):
        try:
            with open(path) as f:
                data = json.load(f)
        except Exception:
            data = {}
    data[key] = value
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".accuracy.", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path
