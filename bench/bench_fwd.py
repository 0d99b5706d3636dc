#!/usr/bin/env python3
"""Forward benchmark: flash_kda.fwd against FLA's Triton chunk_kda, in one run.

The cases are those of shared/design/anchors.md (H in {96, 64} x {T=8192;
varlen [1300,547,2048,963,271,3063]; varlen 8x1024; T=32768; varlen 64x512})
plus the two few-heads long-sequence cases (H=16, T=131072; H=32, T=65536).
All: B=1 (varlen packed with int64 cu_seqlens), K=V=128, random bf16 inputs,
fp32 initial and final state, lower_bound=-5, scale=K^-0.5.

Per case and implementation: warm-up (the first call, then >= 10), then the
median over >= --repeats calls each timed with its own CUDA events. Input sets
rotate when one set is smaller than 2x the L2 cache (never for these sizes).
FLA runs with FLA_FLASH_KDA=0 (so it does not dispatch back into flash_kda),
under torch.inference_mode, with the arguments of its flash_kda path.

The floor is the bytes that must cross HBM (q, k, v, g, out at 2 B, beta at
2 B, fp32 states in and out) over the device-to-device copy bandwidth measured
in the same run (bytes read + written). FlashKDA's speedup over FLA is the
published one of anchors.md, in the column of this GPU model.

    python3 bench/bench_fwd.py [--cases H96,T8192] [--repeats 200] [--no-fla]
                               [--json out.json] [--time-budget 180] [--gate softplus]

--gate softplus: Kimi-Linear's unbounded gate (issue #8) on both sides: ours
with lower_bound=None, FLA with use_gate_in_kernel=True, no lower bound,
safe_gate=False. FlashKDA cannot run it; the aim is 2x FLA.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

os.environ["FLA_FLASH_KDA"] = "0"  # before fla is imported anywhere
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gpu_clock import ClockSampler  # noqa: E402

D = 128
LOWER_BOUND = -5.0
GATE = "lower_bound"  # or "softplus" (--gate)
VARLEN6 = [1300, 547, 2048, 963, 271, 3063]

# (name, H, lengths, varlen)
CASES = [
    ("H96 T8192", 96, [8192], False),
    ("H96 varlen6", 96, VARLEN6, True),
    ("H96 varlen 8x1024", 96, [1024] * 8, True),
    ("H96 T32768", 96, [32768], False),
    ("H96 varlen 64x512", 96, [512] * 64, True),
    ("H64 T8192", 64, [8192], False),
    ("H64 varlen6", 64, VARLEN6, True),
    ("H64 varlen 8x1024", 64, [1024] * 8, True),
    ("H64 T32768", 64, [32768], False),
    ("H64 varlen 64x512", 64, [512] * 64, True),
    ("H16 T131072", 16, [131072], False),
    ("H32 T65536", 32, [65536], False),
]

# FlashKDA's published speedup over FLA (shared/design/anchors.md, measured
# 2026-11-21, median of 300 calls, fp32 states, lower_bound=-5). "H100": the
# anchors' H100 column; None where anchors says "not measured; take H200 x 1.2".
# fla_ms / flashkda_ms: the H200 absolute times of the same table.
FLASHKDA_PUBLISHED = {
    "H96 T8192":         {"H200": 1.86, "H100": 2.17, "fla_ms": 2.620, "flashkda_ms": 1.405, "floor_ms": 0.239},
    "H96 varlen6":       {"H200": 1.91, "H100": 2.08, "fla_ms": 2.663, "flashkda_ms": 1.396, "floor_ms": 0.254},
    "H96 varlen 8x1024": {"H200": 2.20, "H100": 2.34, "fla_ms": 2.627, "flashkda_ms": 1.192, "floor_ms": 0.260},
    "H96 T32768":        {"H200": 1.91, "H100": 2.21, "fla_ms": 10.427, "flashkda_ms": 5.463, "floor_ms": 0.947},
    "H96 varlen 64x512": {"H200": 2.18, "H100": 2.39, "fla_ms": 10.577, "flashkda_ms": 4.851, "floor_ms": 1.132},
    "H64 T8192":         {"H200": 1.46, "H100": 1.71, "fla_ms": 1.747, "flashkda_ms": 1.194, "floor_ms": 0.159},
    "H64 varlen6":       {"H200": 1.77, "H100": None, "fla_ms": 1.807, "flashkda_ms": 1.020, "floor_ms": 0.169},
    "H64 varlen 8x1024": {"H200": 2.22, "H100": None, "fla_ms": 1.804, "flashkda_ms": 0.812, "floor_ms": 0.173},
    "H64 T32768":        {"H200": 1.47, "H100": None, "fla_ms": 6.882, "flashkda_ms": 4.680, "floor_ms": 0.631},
    "H64 varlen 64x512": {"H200": 2.20, "H100": None, "fla_ms": 7.190, "flashkda_ms": 3.264, "floor_ms": 0.755},
    # few heads, long sequence (anchors' second table, H200 only)
    "H16 T131072":       {"H200": 0.68, "H100": None, "fla_ms": 9.277, "flashkda_ms": 13.596, "floor_ms": None},
    "H32 T65536":        {"H200": 1.01, "H100": None, "fla_ms": 7.642, "flashkda_ms": 7.597, "floor_ms": None},
}
H100_FROM_H200 = 1.2  # anchors: "not measured; take H200 x 1.2"


def gpu_column(device_name: str) -> str:
    """Which published column applies to this GPU."""
    name = device_name.upper()
    if "H100" in name:
        return "H100"
    if "H200" in name:
        return "H200"
    return "H200 (this GPU is not in anchors)"


def flashkda_speedup(case_name: str, column: str):
    """(speedup, source) of FlashKDA over FLA for this GPU column."""
    pub = FLASHKDA_PUBLISHED.get(case_name)
    if pub is None:
        return None, "n/a"
    if column == "H100":
        if pub["H100"] is not None:
            return pub["H100"], "H100"
        return round(pub["H200"] * H100_FROM_H200, 3), "H200x1.2"
    return pub["H200"], "H200"


def case_bytes(H: int, lengths, state_bytes: int = 4) -> int:
    """Bytes that must cross HBM once: q, k, v, g, out (2 B), beta (2 B),
    initial and final state (fp32)."""
    T = sum(lengths)
    N = len(lengths)
    return 5 * T * H * D * 2 + T * H * 2 + 2 * N * H * D * D * state_bytes


# --- formatting (no torch needed: bench/write_results.py imports this) -------------
def _f(x, fmt="{:.3f}", na="n/a"):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return na
    return fmt.format(x)


def format_table(data: dict) -> str:
    """The results as an aligned plain-text table (also valid inside a
    Markdown code block)."""
    column = data.get("flashkda_column", "?")
    headers = ["case", "ours ms", "FLA ms", "ours/FLA x", f"FlashKDA x ({column})", "aim x",
               "floor ms", "ours/floor", "FLA/floor", "dOut vs FLA", "n ours/FLA"]
    clocks = any(c.get("ours_mhz") or c.get("fla_mhz") for c in data.get("cases", []))
    if clocks:
        headers.append("MHz ours/FLA")
    rows = []
    for c in data.get("cases", []):
        fk = c.get("flashkda_speedup")
        src = c.get("flashkda_source", "")
        fk_s = _f(fk, "{:.2f}") + ("*" if src == "H200x1.2" else "")
        rows.append([
            c["name"],
            _f(c.get("ours_ms")) if not c.get("ours_error") else "n/a",
            _f(c.get("fla_ms")) if not c.get("fla_error") else "n/a",
            _f(c.get("speedup"), "{:.2f}"),
            fk_s,
            _f(c.get("aim_speedup"), "{:.2f}"),
            _f(c.get("floor_ms")),
            _f(c.get("ours_floor_ratio"), "{:.2f}"),
            _f(c.get("fla_floor_ratio"), "{:.2f}"),
            _f(c.get("ours_vs_fla_out_rel"), "{:.1e}"),
            f"{c.get('ours_n') or '-'}/{c.get('fla_n') or '-'}",
        ] + ([f"{_f(c.get('ours_mhz'), '{:.0f}', '-')}/{_f(c.get('fla_mhz'), '{:.0f}', '-')}"] if clocks else []))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(widths[i]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(headers))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(v.ljust(widths[i]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(r)))
    notes = []
    bw = data.get("copy_bandwidth_tbps")
    notes.append(f"GPU: {data.get('device', '?')}; copy bandwidth {_f(bw, '{:.2f}')} TB/s (read+write); "
                 f"FlashKDA column: {column}")
    notes.append("x = speedup over FLA (FLA ms / ms); aim x = 2 x FlashKDA's (<= 0.5x FlashKDA's time); "
                 "* = H200 x 1.2 (anchors: not measured on H100)")
    if clocks:
        notes.append("MHz: median SM clock from nvidia-smi while the calls were timed (an H200 at its 700 W "
                     "limit lowers it; compare runs in cycles, bench/gpu_clock.py)")
    errs = [f"{c['name']}: ours: {c['ours_error']}" for c in data.get("cases", []) if c.get("ours_error")]
    errs += [f"{c['name']}: FLA: {c['fla_error']}" for c in data.get("cases", []) if c.get("fla_error")]
    for e in errs:
        notes.append("n/a " + e[:300])
    for s in data.get("skipped_cases", []):
        notes.append(f"not run: {s}")
    return "\n".join(lines + [""] + notes)


def write_json(path: str, data: dict) -> None:
    """Rewrites `path` atomically (a run cut short still leaves a whole file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


# --- measuring ------------------------------------------------------------------------
def _torch():
    import torch

    return torch


def time_calls(fns, repeats: int, max_seconds: float, min_repeats: int, warmup: int = 10):
    """Median ms over per-call CUDA events, rotating through `fns`.
    Returns (median_ms, n, all_ms)."""
    torch = _torch()
    fns[0]()  # first call: JIT / autotune / lazy loading
    torch.cuda.synchronize()
    for i in range(warmup):
        fns[i % len(fns)]()
    torch.cuda.synchronize()
    # estimate the per-call time to bound the run
    t0 = time.perf_counter()
    for i in range(3):
        fns[i % len(fns)]()
    torch.cuda.synchronize()
    est = (time.perf_counter() - t0) / 3
    n = repeats
    if est * repeats > max_seconds:
        n = max(min_repeats, int(max_seconds / max(est, 1e-9)))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for i in range(n):
        starts[i].record()
        fns[i % len(fns)]()
        ends[i].record()
    torch.cuda.synchronize()
    ms = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    return statistics.median(ms), n, ms


def time_calls_clocked(fns, args):
    """time_calls with the SM clock and board power sampled meanwhile (unless
    --no-clocks): (median_ms, n, MHz, W)."""
    with ClockSampler(enabled=args.clocks) as clk:
        ms, n, _ = time_calls(fns, args.repeats, args.max_seconds, args.min_repeats)
    return (ms, n) + clk.median()


def capture_graph(fns, calls: int):
    """A CUDA graph of `calls` calls rotating through `fns`, after one eager
    round on a side stream (the capture must not see first-call work)."""
    torch = _torch()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for f in fns:
            f()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(calls):
            fns[i % len(fns)]()
    return graph


def copy_bandwidth(nbytes: int = 1 << 31, iters: int = 20) -> float:
    """Device-to-device copy bandwidth in TB/s, counting bytes read + written."""
    torch = _torch()
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    src.fill_(1)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for i in range(iters):
        starts[i].record()
        dst.copy_(src)
        ends[i].record()
    torch.cuda.synchronize()
    ms = statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends))
    del src, dst
    torch.cuda.empty_cache()
    return 2 * nbytes / (ms * 1e-3) / 1e12


def make_set(H, lengths, varlen, seed):
    torch = _torch()
    gen = torch.Generator(device="cuda").manual_seed(seed)
    T = sum(lengths)
    N = len(lengths)

    def randn(*shape, scale=1.0):
        return (torch.randn(shape, generator=gen, device="cuda") * scale).to(torch.bfloat16)

    s = {
        "q": randn(1, T, H, D),
        "k": randn(1, T, H, D),
        "v": randn(1, T, H, D),
        "g": randn(1, T, H, D),
        "beta": randn(1, T, H),
        "A_log": torch.rand(H, generator=gen, device="cuda"),
        "dt_bias": torch.rand(H, D, generator=gen, device="cuda"),
        "h0": torch.randn(N, H, D, D, generator=gen, device="cuda") * 0.1,
        "out": torch.empty(1, T, H, D, dtype=torch.bfloat16, device="cuda"),
        "ht": torch.empty(N, H, D, D, dtype=torch.float32, device="cuda"),
        "cu_seqlens": None,
    }
    if varlen:
        cu = [0]
        for n in lengths:
            cu.append(cu[-1] + n)
        s["cu_seqlens"] = torch.tensor(cu, dtype=torch.int64, device="cuda")
    return s


def ours_fn(flash_kda, s):
    scale = D ** -0.5

    def fn():
        flash_kda.fwd(s["q"], s["k"], s["v"], s["g"], s["beta"], scale, s["out"],
                      A_log=s["A_log"], dt_bias=s["dt_bias"],
                      lower_bound=LOWER_BOUND if GATE == "lower_bound" else None,
                      initial_state=s["h0"], final_state=s["ht"], cu_seqlens=s["cu_seqlens"])
    return fn


def fla_fn(chunk_kda, s, result=None):
    """FLA's Triton chunk_kda with the arguments of FLA's own flash_kda path."""
    torch = _torch()
    scale = D ** -0.5
    dt_flat = s["dt_bias"].reshape(-1)

    def fn():
        with torch.inference_mode():
            o, ht = chunk_kda(
                q=s["q"], k=s["k"], v=s["v"], g=s["g"], beta=s["beta"], scale=scale,
                initial_state=s["h0"], output_final_state=True,
                use_qk_l2norm_in_kernel=True, use_gate_in_kernel=True,
                use_beta_sigmoid_in_kernel=True, safe_gate=GATE == "lower_bound",
                lower_bound=LOWER_BOUND if GATE == "lower_bound" else None,
                state_v_first=True, cu_seqlens=s["cu_seqlens"], A_log=s["A_log"], dt_bias=dt_flat)
        if result is not None:
            result["o"], result["ht"] = o, ht
    return fn


def _rel(a, b):
    torch = _torch()
    a, b = a.double(), b.double()
    den = torch.linalg.vector_norm(b).item()
    num = torch.linalg.vector_norm(a - b).item()
    return num / den if den > 0 else (0.0 if num == 0 else math.inf)


def _short_error(e: BaseException) -> str:
    msg = f"{type(e).__name__}: {e}".replace("\n", " ")
    return msg[:400]


def run_case(name, H, lengths, varlen, args, flash_kda, chunk_kda, l2_bytes, bw_tbps, column):
    torch = _torch()
    nbytes = case_bytes(H, lengths)
    # rotate input sets when one set would stay in L2 (never for the anchors cases)
    n_sets = 1 if nbytes >= 2 * l2_bytes else min(32, max(2, math.ceil(2 * l2_bytes / max(nbytes, 1)) + 1))
    sets = [make_set(H, lengths, varlen, seed=1234 + 17 * i) for i in range(n_sets)]
    fk, fk_src = flashkda_speedup(name, column) if GATE == "lower_bound" else (None, "cannot run this gate")
    r = {
        "name": name, "H": H, "num_sequences": len(lengths), "tokens": sum(lengths),
        "lengths": lengths if len(lengths) <= 8 else f"{len(lengths)}x{lengths[0]}"
        if len(set(lengths)) == 1 else lengths,
        "varlen": varlen, "bytes": nbytes, "input_sets": n_sets,
        "floor_ms": nbytes / (bw_tbps * 1e12) * 1e3 if bw_tbps else None,
        "flashkda_speedup": fk, "flashkda_source": fk_src,
        "aim_speedup": 2 * fk if fk else (2.0 if GATE != "lower_bound" else None),
        "ours_ms": None, "ours_n": None, "ours_error": None,
        "fla_ms": None, "fla_n": None, "fla_error": None,
    }
    if flash_kda is None:
        r["ours_error"] = args.ours_unavailable
    else:
        try:
            r["ours_ms"], r["ours_n"], r["ours_mhz"], r["ours_w"] = time_calls_clocked(
                [ours_fn(flash_kda, s) for s in sets], args)
        except Exception as e:
            r["ours_error"] = _short_error(e)
    if chunk_kda is None:
        r["fla_error"] = args.fla_unavailable
    else:
        try:
            # the first call runs with a spy on flash_kda.fwd: FLA must not dispatch to us
            spied = []
            if flash_kda is not None:
                real = flash_kda.fwd

                def spy(*a, **k):
                    spied.append(1)
                    return real(*a, **k)

                flash_kda.fwd = spy
            try:
                fla_fn(chunk_kda, sets[0])()
                torch.cuda.synchronize()
            finally:
                if flash_kda is not None:
                    flash_kda.fwd = real
            if spied:
                raise RuntimeError("FLA dispatched chunk_kda to flash_kda (FLA_FLASH_KDA=0 not honoured)")
            r["fla_ms"], r["fla_n"], r["fla_mhz"], r["fla_w"] = time_calls_clocked(
                [fla_fn(chunk_kda, s) for s in sets], args)
        except Exception as e:
            r["fla_error"] = _short_error(e)
    # a cheap sanity check: ours against FLA on set 0
    if r["ours_ms"] is not None and r["fla_ms"] is not None:
        try:
            res = {}
            ours_fn(flash_kda, sets[0])()
            fla_fn(chunk_kda, sets[0], res)()
            torch.cuda.synchronize()
            r["ours_vs_fla_out_rel"] = _rel(sets[0]["out"], res["o"])
            r["ours_vs_fla_state_rel"] = _rel(sets[0]["ht"], res["ht"])
        except Exception as e:
            r["sanity_error"] = _short_error(e)
    if r["ours_ms"] and r["fla_ms"]:
        r["speedup"] = r["fla_ms"] / r["ours_ms"]
    if r["floor_ms"]:
        if r["ours_ms"]:
            r["ours_floor_ratio"] = r["ours_ms"] / r["floor_ms"]
        if r["fla_ms"]:
            r["fla_floor_ratio"] = r["fla_ms"] / r["floor_ms"]
    del sets
    torch.cuda.empty_cache()
    return r


def select_cases(spec: str | None, cases=None):
    """The cases (tuples, name first) matching a comma-separated filter: a case
    runs if every word of one filter is a word of its name."""
    cases = CASES if cases is None else cases
    if not spec:
        return list(cases)
    wanted = [w.strip().lower() for w in spec.split(",") if w.strip()]
    return [c for c in cases if any(all(part in c[0].lower().split() for part in w.split()) for w in wanted)]


def import_ours(args, needs: str | None = None):
    """flash_kda if it imports with CUDA kernels for this GPU (and has `needs`),
    else None with the reason in args.ours_unavailable."""
    args.ours_unavailable = "not run (--no-ours)"
    if args.no_ours:
        return None
    try:
        import flash_kda as fk
    except Exception as e:
        args.ours_unavailable = f"flash_kda does not import: {_short_error(e)}"
        return None
    if needs is not None and not hasattr(fk, needs):
        args.ours_unavailable = f"this flash_kda has no {needs}"
    elif not fk.cuda_available():
        args.ours_unavailable = f"flash_kda has no CUDA kernels for this GPU ({fk.build_info()})"
    else:
        return fk
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=os.environ.get("BENCH_CASES", ""),
                   help="comma-separated filters; a case runs if every word of one filter is in its "
                        "name, e.g. 'H96 T8192,varlen6' (default: all; env BENCH_CASES)")
    p.add_argument("--repeats", type=int, default=200, help="timed calls per measurement (default 200)")
    p.add_argument("--min-repeats", type=int, default=50,
                   help="fewest timed calls when --max-seconds would cut a measurement short")
    p.add_argument("--max-seconds", type=float, default=4.0,
                   help="wall-clock budget of one measurement's timed calls (default 4 s)")
    p.add_argument("--time-budget", type=float, default=float(os.environ.get("BENCH_TIME_BUDGET", "0") or 0),
                   help="stop starting new cases after this many seconds (0 = no limit; env BENCH_TIME_BUDGET)")
    p.add_argument("--no-fla", action="store_true", help="do not run FLA's chunk_kda")
    p.add_argument("--no-clocks", dest="clocks", action="store_false",
                   help="do not sample the SM clock with nvidia-smi while timing")
    p.add_argument("--no-ours", action="store_true", help="do not run flash_kda (FLA only)")
    p.add_argument("--json", default=None, help="write the results here (rewritten after every case)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--gate", choices=("lower_bound", "softplus"), default="lower_bound",
                   help="the gate on both sides (default lower_bound = FlashKDA's)")
    args = p.parse_args(argv)
    global GATE
    GATE = args.gate

    cases = select_cases(args.cases)
    if args.list:
        for c in cases:
            print(c[0])
        return 0
    if not cases:
        print(f"no case matches --cases {args.cases!r}; cases: {[c[0] for c in CASES]}")
        return 2

    t_start = time.perf_counter()
    torch = _torch()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to benchmark")
        return 2
    props = torch.cuda.get_device_properties(0)
    device = torch.cuda.get_device_name(0)
    column = gpu_column(device)
    l2_bytes = int(getattr(props, "L2_cache_size", 0) or 50 * 2**20)

    flash_kda = import_ours(args)
    chunk_kda = None
    args.fla_unavailable = "not run (--no-fla)"
    if not args.no_fla:
        sys.path.insert(0, os.path.join(HERE, "..", "tests", "gpu"))
        from kda_cases import import_chunk_kda

        chunk_kda, note = import_chunk_kda()
        if chunk_kda is None:
            args.fla_unavailable = note[:400]
        elif note:
            print(f"fla: {note[:400]}")

    data = {
        "device": device,
        "capability": f"{props.major}.{props.minor}",
        "sm_count": props.multi_processor_count,
        "l2_bytes": l2_bytes,
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
        "flashkda_column": column,
        "settings": {"repeats": args.repeats, "min_repeats": args.min_repeats,
                     "max_seconds": args.max_seconds, "warmup": "1 + 10", "gate": GATE,
                     "lower_bound": LOWER_BOUND if GATE == "lower_bound" else None,
                     "states": "fp32 in and out", "statistic": "median of per-call CUDA events"},
        "cases": [],
        "skipped_cases": [],
    }
    try:
        import triton

        data["triton"] = triton.__version__
    except Exception:
        pass
    if chunk_kda is not None:
        try:
            from importlib.metadata import version

            data["fla"] = version("fla-core")
        except Exception:
            data["fla"] = "?"
    if flash_kda is not None:
        try:
            data["flash_kda_build"] = flash_kda.build_info()
        except Exception:
            pass

    def dump():
        if args.json:
            write_json(args.json, data)

    bw = copy_bandwidth()
    data["copy_bandwidth_tbps"] = bw
    print(f"GPU {device} (cc {props.major}.{props.minor}, {props.multi_processor_count} SMs, "
          f"L2 {l2_bytes / 2**20:.0f} MiB); copy bandwidth {bw:.2f} TB/s; FlashKDA column: {column}")
    print(f"ours: {'flash_kda ' + data.get('flash_kda_build', '') if flash_kda else args.ours_unavailable}")
    print(f"FLA: {'chunk_kda (Triton, FLA_FLASH_KDA=0)' if chunk_kda else args.fla_unavailable}")
    print(f"timing: first call + 10 warm-up calls, then median of --repeats={args.repeats} per-call CUDA events "
          f"(fewer, >= {args.min_repeats}, if one measurement would exceed {args.max_seconds:g} s)")
    dump()

    for name, H, lengths, varlen in cases:
        elapsed = time.perf_counter() - t_start
        if args.time_budget and elapsed > args.time_budget:
            data["skipped_cases"].append(f"{name} (time budget {args.time_budget:g} s spent)")
            print(f"{name}: skipped (time budget {args.time_budget:g} s spent)")
            dump()
            continue
        t0 = time.perf_counter()
        r = run_case(name, H, lengths, varlen, args, flash_kda, chunk_kda, l2_bytes, bw, column)
        r["wall_s"] = round(time.perf_counter() - t0, 1)
        data["cases"].append(r)
        dump()
        print(f"{name}: ours {_f(r['ours_ms'])} ms (n={r['ours_n']}), FLA {_f(r['fla_ms'])} ms (n={r['fla_n']}), "
              f"speedup {_f(r.get('speedup'), '{:.2f}')}x (FlashKDA {_f(r['flashkda_speedup'], '{:.2f}')}x "
              f"{r['flashkda_source']}), floor {_f(r['floor_ms'])} ms, ours/floor "
              f"{_f(r.get('ours_floor_ratio'), '{:.2f}')}, out vs FLA {_f(r.get('ours_vs_fla_out_rel'), '{:.1e}')} "
              f"[{r['wall_s']} s]"
              + (f"\n    ours error: {r['ours_error']}" if r["ours_error"] and flash_kda else "")
              + (f"\n    FLA error: {r['fla_error']}" if r["fla_error"] and chunk_kda else ""),
              flush=True)

    data["wall_s"] = round(time.perf_counter() - t_start, 1)
    dump()
    print()
    print(format_table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
