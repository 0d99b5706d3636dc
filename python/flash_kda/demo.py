"""End-to-end demo of flash_kda: ``python -m flash_kda.demo``.

Generates a realistic KDA problem (random bf16 q, k, v, g, beta; Mamba-style
A_log; dt_bias; lower_bound -5; an fp32 initial state scaled by 0.1), runs
``flash_kda.fwd`` on the best device present, checks the result against the
float64 oracle ``flash_kda.reference_fwd`` on a slice (a few heads; on the
GPU also only the first sequences), and reports accuracy and speed:

* relative L2 error of ``out`` and ``final_state`` against the oracle,
  PASS/FAIL against the bar 5e-3 (the exit code is 1 on FAIL);
* median time of several runs, tokens/s and effective bandwidth (bytes of
  q, k, v, g, beta, out and the states divided by the time).

The device: CUDA through PyTorch when torch sees a GPU and this build has
kernels for it, else the CPU backend through NumPy (needs ``ml_dtypes`` for
bfloat16) at a size that finishes in seconds.

Examples::

    python -m flash_kda.demo                          # auto device, default size
    python -m flash_kda.demo --device cpu --heads 2 --seq-len 1024
    python -m flash_kda.demo --device cuda --varlen 1300,547,2048,963,271,3063
    python -m flash_kda.demo --state-dtype bf16 --repeats 50
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

import flash_kda

BAR = 5e-3
K = V = 128
CPU_DEFAULTS = dict(heads=4, seq_len=2048, repeats=5)
GPU_DEFAULTS = dict(heads=96, seq_len=8192, repeats=20)
# Head-tokens the float64 oracle checks on the GPU path (~1 s of CPU time).
REFERENCE_BUDGET = 2 * 8192


def log(msg: str) -> None:
    print(msg, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m flash_kda.demo",
        description="Run flash_kda.fwd on a random KDA problem, check it against the "
        "float64 oracle and report accuracy and speed.",
    )
    ap.add_argument("--heads", type=int, default=None,
                    help="H (default: 96 on CUDA, 4 on CPU)")
    ap.add_argument("--seq-len", type=int, default=None,
                    help="T tokens per row (default: 8192 on CUDA, 2048 on CPU)")
    ap.add_argument("--batch", type=int, default=1, help="B rows, each its own sequence (default 1)")
    ap.add_argument("--varlen", type=str, default=None, metavar="L1,L2,...",
                    help="pack sequences of these lengths into one row with cu_seqlens "
                    "(overrides --batch and --seq-len)")
    ap.add_argument("--state-dtype", choices=("none", "bf16", "fp32"), default="fp32",
                    help="dtype of initial_state/final_state, or none for no states (default fp32)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="auto: CUDA if available and built, else CPU (default auto)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed runs; the median is reported (default: 20 on CUDA, 5 on CPU)")
    ap.add_argument("--check-heads", type=int, default=2,
                    help="heads checked against the float64 oracle (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = ap.parse_args(argv)
    if args.varlen is not None:
        try:
            args.seqlens = [int(x) for x in args.varlen.split(",") if x.strip()]
        except ValueError:
            ap.error(f"--varlen: expected comma-separated integers, got {args.varlen!r}")
        if not args.seqlens or min(args.seqlens) < 0:
            ap.error("--varlen: expected one or more non-negative lengths")
    else:
        args.seqlens = None
    for name in ("heads", "seq_len", "repeats", "batch", "check_heads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name.replace('_', '-')}: expected a positive integer, got {value}")
    return args


def cuda_status() -> tuple[bool, str]:
    """(usable, why not) for the CUDA path."""
    try:
        import torch
    except ImportError:
        return False, "PyTorch is not installed"
    if not torch.cuda.is_available():
        return False, "PyTorch sees no CUDA device"
    dev = torch.cuda.current_device()
    if not flash_kda.cuda_available(dev):
        return False, (f"this flash_kda build has no kernels for "
                       f"{torch.cuda.get_device_name(dev)} ({flash_kda.build_info()})")
    return True, ""


# ---- problem generation --------------------------------------------------------------


class Problem:
    """The arguments of fwd plus sizes; arrays are NumPy or torch tensors."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)

    def fwd_args(self) -> tuple:
        return (self.q, self.k, self.v, self.g, self.beta, self.scale, self.out,
                self.A_log, self.dt_bias, self.lower_bound, self.initial_state,
                self.final_state, self.cu_seqlens)


def sizes(args: argparse.Namespace) -> tuple[int, int, int, list[int] | None]:
    if args.seqlens is not None:
        return 1, sum(args.seqlens), len(args.seqlens), args.seqlens
    return args.batch, args.seq_len, args.batch, None


def make_numpy_problem(args: argparse.Namespace) -> Problem:
    from flash_kda.testing import make_problem

    B, T, N, seqlens = sizes(args)
    state = None if args.state_dtype == "none" else args.state_dtype
    p = make_problem(batch=B, seq_len=T, heads=args.heads, seqlens=seqlens,
                     state_dtype=state, seed=args.seed)
    out = np.empty((B, T, args.heads, V), dtype=p["q"].dtype)
    final_state = None
    if state is not None:
        final_state = np.empty_like(p["initial_state"])
    return Problem(**{k: p[k] for k in ("q", "k", "v", "g", "beta", "scale", "A_log", "dt_bias",
                                         "lower_bound", "initial_state", "cu_seqlens")},
                   out=out, final_state=final_state, B=B, T=T, H=args.heads, N=N)


def make_torch_problem(args: argparse.Namespace, device: str) -> Problem:
    import torch

    B, T, N, seqlens = sizes(args)
    H = args.heads
    gen = torch.Generator(device=device).manual_seed(args.seed)
    bf16 = torch.bfloat16

    def randn(*shape: int) -> "torch.Tensor":
        return torch.randn(shape, generator=gen, device=device, dtype=torch.float32).to(bf16)

    cu = None
    if seqlens is not None:
        cu = torch.zeros(len(seqlens) + 1, dtype=torch.int64)
        cu[1:] = torch.cumsum(torch.tensor(seqlens, dtype=torch.int64), 0)
        cu = cu.to(device)
    A_log = torch.log(torch.rand(H, generator=gen, device=device) * 15 + 1).float()
    dt_bias = (0.5 * torch.randn(H, K, generator=gen, device=device)).float()
    initial_state = final_state = None
    if args.state_dtype != "none":
        dt = torch.float32 if args.state_dtype == "fp32" else bf16
        initial_state = (0.1 * torch.randn(N, H, V, K, generator=gen, device=device)).to(dt)
        final_state = torch.empty_like(initial_state)
    return Problem(q=randn(B, T, H, K), k=randn(B, T, H, K), v=randn(B, T, H, V),
                   g=randn(B, T, H, K), beta=randn(B, T, H), scale=K ** -0.5,
                   out=torch.empty(B, T, H, V, dtype=bf16, device=device), A_log=A_log,
                   dt_bias=dt_bias, lower_bound=-5.0, initial_state=initial_state,
                   final_state=final_state, cu_seqlens=cu, B=B, T=T, H=H, N=N)


# ---- timing ----------------------------------------------------------------------------


def time_cpu(run: Callable[[], None], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return times


def time_cuda(run: Callable[[], None], repeats: int) -> list[float]:
    import torch

    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return times


def nbytes(x: Any) -> int:
    if x is None:
        return 0
    if hasattr(x, "nbytes"):
        return int(x.nbytes)
    return int(x.numel() * x.element_size())  # torch


# ---- the check against the oracle --------------------------------------------------------


def to_host(x: Any) -> Any:
    """A contiguous host copy (torch stays torch, NumPy stays NumPy)."""
    if x is None:
        return None
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x)
    return x.detach().to("cpu").contiguous()


def to_f64(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x.astype(np.float64)
    return x.detach().to("cpu").double().numpy()


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    denom = float(np.linalg.norm(b))
    diff = float(np.linalg.norm(a - b))
    return diff / denom if denom > 0 else (0.0 if diff == 0 else math.inf)


def check(p: Problem, args: argparse.Namespace, on_gpu: bool) -> tuple[float, float | None, str]:
    """Runs the oracle on a slice of the problem; returns (err_out, err_state, what)."""
    hc = min(args.check_heads, p.H)
    # Which tokens and sequences: all on the CPU; on the GPU the first
    # sequences (rows) within the oracle's budget, at least one.
    if p.cu_seqlens is not None:
        cu = to_f64(p.cu_seqlens).astype(np.int64)
        n_seq = len(cu) - 1
        if on_gpu:
            n_seq = max(1, int(np.searchsorted(cu, REFERENCE_BUDGET // hc, side="right")) - 1)
            n_seq = min(n_seq, len(cu) - 1)
        t_end, rows = int(cu[n_seq]), 1
        what = f"heads 0..{hc - 1}, sequences 0..{n_seq - 1} ({t_end} tokens)"
    else:
        n_seq = p.B
        if on_gpu:
            n_seq = max(1, min(p.B, REFERENCE_BUDGET // max(1, hc * p.T)))
        t_end, rows = p.T, n_seq
        what = f"heads 0..{hc - 1}, rows 0..{rows - 1} ({rows * t_end} tokens)"

    def tok(x):  # [B, T, H, ...] -> rows, tokens, checked heads
        return to_host(x[:rows, :t_end, :hc])

    q, k, v, g, beta = (tok(x) for x in (p.q, p.k, p.v, p.g, p.beta))
    h0 = None if p.initial_state is None else to_host(p.initial_state[:n_seq, :hc])
    cu_ref = None
    if p.cu_seqlens is not None:
        cu_ref = to_host(p.cu_seqlens[:n_seq + 1])
    ref_out = np.zeros((rows, t_end, hc, V))
    ref_state = None if p.final_state is None else np.zeros((n_seq, hc, V, K))
    if h0 is not None:
        # The oracle's states share one dtype: read the initial state in float64.
        h0 = to_f64(h0)
    flash_kda.reference_fwd(q, k, v, g, beta, p.scale, ref_out, to_host(p.A_log[:hc]),
                            to_host(p.dt_bias[:hc]), p.lower_bound, h0, ref_state, cu_ref)
    err_out = rel_l2(to_f64(p.out[:rows, :t_end, :hc]), ref_out)
    err_state = None
    if ref_state is not None:
        err_state = rel_l2(to_f64(p.final_state[:n_seq, :hc]), ref_state)
    return err_out, err_state, what


# ---- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log(f"flash_kda {flash_kda.__version__}: {flash_kda.build_info()}")

    ok, why = cuda_status() if args.device in ("auto", "cuda") else (False, "--device cpu")
    if args.device == "cuda" and not ok:
        log(f"error: --device cuda: {why}")
        return 2
    on_gpu = ok
    defaults = GPU_DEFAULTS if on_gpu else CPU_DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.seqlens is None and args.seq_len is None:
        args.seq_len = defaults["seq_len"]

    if on_gpu:
        import torch

        device = f"cuda:{torch.cuda.current_device()}"
        log(f"device: {device} ({torch.cuda.get_device_name()}), PyTorch {torch.__version__}")
    else:
        device = "cpu"
        if args.device == "auto":
            log(f"device: cpu (CUDA not used: {why})")
        else:
            log("device: cpu")
        try:
            import ml_dtypes  # noqa: F401
        except ImportError:
            log("error: the CPU demo needs ml_dtypes for bfloat16 NumPy arrays: pip install ml_dtypes")
            return 2

    B, T, N, seqlens = sizes(args)
    shape_desc = (f"varlen {seqlens} (T={T})" if seqlens is not None else f"B={B} T={T}")
    log(f"problem: {shape_desc} H={args.heads} K=V={K} states={args.state_dtype} "
        f"lower_bound=-5 seed={args.seed}")

    log("[1/4] generating inputs ...")
    t0 = time.perf_counter()
    p = make_torch_problem(args, device) if on_gpu else make_numpy_problem(args)
    if on_gpu:
        import torch

        torch.cuda.synchronize()
    log(f"      done in {time.perf_counter() - t0:.2f} s")

    def run() -> None:
        flash_kda.fwd(p.q, p.k, p.v, p.g, p.beta, p.scale, p.out, A_log=p.A_log,
                      dt_bias=p.dt_bias, lower_bound=p.lower_bound,
                      initial_state=p.initial_state, final_state=p.final_state,
                      cu_seqlens=p.cu_seqlens)

    log("[2/4] warm-up run ...")
    t0 = time.perf_counter()
    run()
    if on_gpu:
        torch.cuda.synchronize()
    log(f"      done in {time.perf_counter() - t0:.3f} s")

    log(f"[3/4] timing {args.repeats} runs ...")
    times = (time_cuda if on_gpu else time_cpu)(run, args.repeats)
    med = statistics.median(times)

    log("[4/4] checking against the float64 oracle (reference_fwd) ...")
    t0 = time.perf_counter()
    err_out, err_state, what = check(p, args, on_gpu)
    log(f"      on {what}, done in {time.perf_counter() - t0:.2f} s")

    moved = sum(nbytes(x) for x in (p.q, p.k, p.v, p.g, p.beta, p.out, p.A_log, p.dt_bias,
                                    p.initial_state, p.final_state, p.cu_seqlens))
    tokens = B * T
    log("")
    log(f"time       : {med * 1e3:.3f} ms (median of {len(times)}; "
        f"min {min(times) * 1e3:.3f} ms, max {max(times) * 1e3:.3f} ms)")
    log(f"throughput : {tokens / med:,.0f} tokens/s ({tokens} tokens x {args.heads} heads)")
    log(f"bandwidth  : {moved / med / 1e9:.2f} GB/s effective ({moved / 1e6:.1f} MB moved)")
    passed = math.isfinite(err_out) and err_out < BAR
    log(f"out        : rel L2 error {err_out:.3e}  {'PASS' if passed else 'FAIL'} (bar {BAR:g})")
    if err_state is not None:
        state_ok = math.isfinite(err_state) and err_state < BAR
        passed = passed and state_ok
        log(f"final_state: rel L2 error {err_state:.3e}  {'PASS' if state_ok else 'FAIL'} "
            f"(bar {BAR:g})")
    log("result     : " + ("PASS" if passed else "FAIL"))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
