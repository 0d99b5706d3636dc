#!/usr/bin/env python3
"""Decode benchmark: flash_kda.decode (one step over a state pool) against
FLA's Triton fused_recurrent_kda, in one run.

Cases (K = V = 128, lower_bound = -5, scale = K^-0.5, random non-zero bf16
inputs, state pools of random values, each sequence in a random pool slot):
  * bandwidth cases: fp32 pool, t = 1, N * H >= 2048 (and one bf16 pool);
  * the comparison grid: N in {1, 8, 64, 256} x H in {32, 64} x t in {1, 4},
    fp32 pool.

Per case and implementation, two timings:
  * "graph": --graph-calls calls captured in one CUDA graph, replayed; the
    median replay time / calls. GPU time only (no Python / launch overhead):
    the number the bandwidth ratio uses.
  * "eager": the median over per-call CUDA events of plain calls (includes
    host overhead whenever the GPU work is shorter than the launch path).
Warm-up first (the first call, then >= 10). Input sets rotate (distinct pool
slots and inputs) when one set's bytes are under 2x the L2 cache, so the state
is read from HBM, not L2.

Bytes per call: state read + written (N * H * 128 * 128 * 4 or 2, twice),
q, k, v, g, out (N * t * H * 128 * 2 each), beta, the slot indices, A_log,
dt_bias. Bandwidth = bytes / graph time, compared with a device-to-device
copy (bytes read + written) measured in the same run.

FLA (fla-core 0.6.0) runs fused_recurrent_kda_fwd, its pooled (continuous-
batching) mode, which is the closest to ours: ssm_state_indices with
inplace_final_state=True (the pool is read and written in place, in-kernel),
state_v_first=True (our [V, K] layout), use_gate_in_kernel=True with A_log,
dt_bias and lower_bound, use_qk_l2norm_in_kernel=True,
use_beta_sigmoid_in_kernel=True: the same math from the same raw inputs.
Difference: for t > 1 FLA's pooled mode stores the state after every token
(its speculative-decoding layout: indices [N, t], here all = the sequence's
slot), so it writes the state t times; ours writes it once.

    python3 bench/bench_decode.py [--cases "N64 H32 t1,bw"] [--repeats 200]
                                  [--no-fla] [--json out.json] [--time-budget 120]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

os.environ["FLA_FLASH_KDA"] = "0"  # before fla is imported anywhere
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_fwd import (  # noqa: E402
    _f, _rel, _short_error, _torch, capture_graph, copy_bandwidth, import_ours, time_calls, write_json)
from bench_fwd import select_cases as _select_cases  # noqa: E402

D = 128
LOWER_BOUND = -5.0


# (name, N, H, t, state dtype)
def _cases():
    cases = [
        ("bw fp32 N64 H32 t1", 64, 32, 1, "fp32"),      # N * H = 2048
        ("bw fp32 N256 H64 t1", 256, 64, 1, "fp32"),    # 16384
        ("bw fp32 N1024 H32 t1", 1024, 32, 1, "fp32"),  # 32768
        ("bw bf16 N256 H64 t1", 256, 64, 1, "bf16"),
    ]
    for N in (1, 8, 64, 256):
        for H in (32, 64):
            for t in (1, 4):
                cases.append((f"grid fp32 N{N} H{H} t{t}", N, H, t, "fp32"))
    return cases


CASES = _cases()


def case_bytes(N: int, H: int, t: int, state: str) -> int:
    """Bytes that must cross HBM once per call."""
    sb = 4 if state == "fp32" else 2
    tokens = N * t
    return (2 * N * H * D * D * sb          # state read + written
            + 5 * tokens * H * D * 2        # q, k, v, g, out
            + tokens * H * 2                # beta
            + N * 8                         # state_indices (int64)
            + H * 4 + H * D * 4)            # A_log, dt_bias


def input_set_count(nbytes: int, l2_bytes: int) -> int:
    """Input sets to rotate through so that a call's state comes from HBM:
    enough that they span twice the L2 cache (at most 64)."""
    return 1 if nbytes >= 2 * l2_bytes else min(64, math.ceil(2 * l2_bytes / nbytes) + 1)


def select_cases(spec: str | None):
    return _select_cases(spec, CASES)


# --- formatting (no torch needed) -----------------------------------------------------
def format_table(data: dict) -> str:
    headers = ["case", "bytes MB", "ours us", "ours GB/s", "ours/copy", "FLA us", "FLA/copy",
               "ours/FLA x", "ours eager us", "FLA eager us", "dOut vs FLA"]
    rows = []
    for c in data.get("cases", []):
        rows.append([
            c["name"], _f(c["bytes"] / 1e6, "{:.1f}"),
            _f(c.get("ours_us"), "{:.1f}"), _f(c.get("ours_gbps"), "{:.0f}"),
            _f(c.get("ours_copy_ratio"), "{:.2f}"),
            _f(c.get("fla_us"), "{:.1f}"), _f(c.get("fla_copy_ratio"), "{:.2f}"),
            _f(c.get("speedup"), "{:.2f}"),
            _f(c.get("ours_eager_us"), "{:.1f}"), _f(c.get("fla_eager_us"), "{:.1f}"),
            _f(c.get("ours_vs_fla_out_rel"), "{:.1e}"),
        ])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(widths[i]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(headers))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(v.ljust(widths[i]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(r)))
    notes = [f"GPU: {data.get('device', '?')}; copy bandwidth {_f(data.get('copy_bandwidth_tbps'), '{:.2f}')} TB/s "
             "(read+write)",
             "us = graph time per call (GPU only); x/copy = achieved bandwidth / copy bandwidth; "
             "eager = per-call CUDA events of plain calls (includes launch overhead)",
             "FLA: fused_recurrent_kda_fwd, pooled in-place mode (ssm_state_indices, inplace_final_state), "
             "gate / l2norm / beta sigmoid in kernel; for t > 1 it stores the state after every token"]
    bw = [c for c in data.get("cases", []) if c["name"].startswith("bw fp32") and c.get("ours_copy_ratio")]
    if bw:
        notes.append("fp32 t=1 N*H>=2048: ours/copy " + ", ".join(
            f"{c['name'][8:]} {c['ours_copy_ratio']:.2f}" for c in bw) + " (aim >= 0.80)")
    for c in data.get("cases", []):
        for who in ("ours", "fla"):
            if c.get(f"{who}_error"):
                notes.append(f"n/a {c['name']}: {who}: {c[f'{who}_error'][:300]}")
    for s in data.get("skipped_cases", []):
        notes.append(f"not run: {s}")
    return "\n".join(lines + [""] + notes)


# --- measuring ------------------------------------------------------------------------
def time_graph(fns, calls: int, replays: int, max_seconds: float):
    """Median ms per call over replays of a CUDA graph of `calls` calls
    (rotating through `fns`). Returns (ms_per_call, replays_done)."""
    torch = _torch()
    graph = capture_graph(fns, calls)
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    graph.replay()
    torch.cuda.synchronize()
    est = time.perf_counter() - t0
    n = max(10, min(replays, int(max_seconds / max(est, 1e-9))))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for i in range(n):
        starts[i].record()
        graph.replay()
        ends[i].record()
    torch.cuda.synchronize()
    ms = statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends)) / calls
    del graph
    return ms, n


def make_sets(N, H, t, state, n_sets, seed):
    """n_sets input sets sharing one pool of N * n_sets slots; set i uses a
    random permutation's slots i*N .. (i+1)*N."""
    torch = _torch()
    gen = torch.Generator(device="cuda").manual_seed(seed)
    dtype = torch.float32 if state == "fp32" else torch.bfloat16
    P = N * n_sets
    pool = (torch.randn(P, H, D, D, generator=gen, device="cuda") * 0.1).to(dtype)
    perm = torch.randperm(P, generator=gen, device="cuda")
    A_log = torch.rand(H, generator=gen, device="cuda") * 2 - 1
    dt_bias = torch.rand(H, D, generator=gen, device="cuda") * 8 - 4

    def randn(*shape):
        return torch.randn(shape, generator=gen, device="cuda").to(torch.bfloat16)

    sets = []
    for i in range(n_sets):
        slots = perm[i * N:(i + 1) * N].to(torch.int64).contiguous()
        sets.append({
            "q": randn(N, t, H, D), "k": randn(N, t, H, D), "v": randn(N, t, H, D),
            "g": (torch.rand(N, t, H, D, generator=gen, device="cuda") * 16 - 8).to(torch.bfloat16),
            "beta": randn(N, t, H),
            "A_log": A_log, "dt_bias": dt_bias, "pool": pool, "slots": slots,
            # FLA's pooled mode: [N] for t = 1; [N, t] (all = the slot) for t > 1
            "fla_slots": slots if t == 1 else slots[:, None].expand(N, t).contiguous(),
            "out": torch.full((N, t, H, D), float("nan"), dtype=torch.bfloat16, device="cuda"),
            "fla_out": torch.full((N, t, H, D), float("nan"), dtype=torch.bfloat16, device="cuda"),
        })
    return sets


def ours_fn(flash_kda, s, pool=None):
    scale = D ** -0.5
    pool = s["pool"] if pool is None else pool

    def fn():
        flash_kda.decode(s["q"], s["k"], s["v"], s["g"], s["beta"], scale, s["out"], s["A_log"],
                         s["dt_bias"], LOWER_BOUND, pool, s["slots"])
    return fn


def fla_fn(fused_fwd, s, pool=None):
    scale = D ** -0.5
    pool = s["pool"] if pool is None else pool

    def fn():
        fused_fwd(q=s["q"], k=s["k"], v=s["v"], g=s["g"], beta=s["beta"], A_log=s["A_log"],
                  dt_bias=s["dt_bias"], initial_state=pool, scale=scale, output_final_state=False,
                  inplace_final_state=True, state_v_first=True, ssm_state_indices=s["fla_slots"],
                  use_qk_l2norm_in_kernel=True, use_gate_in_kernel=True,
                  use_beta_sigmoid_in_kernel=True, lower_bound=LOWER_BOUND, out=s["fla_out"])
    return fn


def run_case(name, N, H, t, state, args, flash_kda, fused_fwd, l2_bytes, bw_tbps):
    torch = _torch()
    nbytes = case_bytes(N, H, t, state)
    n_sets = input_set_count(nbytes, l2_bytes)
    sets = make_sets(N, H, t, state, n_sets, seed=4321 + N * 7 + H + t)
    r = {"name": name, "N": N, "H": H, "t": t, "state": state, "bytes": nbytes, "input_sets": n_sets,
         "pool_slots": N * n_sets}
    for who, fn_of, impl, missing in (("ours", ours_fn, flash_kda, args.ours_unavailable),
                                      ("fla", fla_fn, fused_fwd, args.fla_unavailable)):
        if impl is None:
            r[f"{who}_error"] = missing
            continue
        try:
            fns = [fn_of(impl, s) for s in sets]
            ms, n = time_graph(fns, args.graph_calls, args.repeats, args.max_seconds)
            r[f"{who}_us"], r[f"{who}_graph_replays"] = ms * 1e3, n
            r[f"{who}_gbps"] = nbytes / (ms * 1e-3) / 1e9
            if bw_tbps:
                r[f"{who}_copy_ratio"] = r[f"{who}_gbps"] / (bw_tbps * 1e3)
            ms, n, _ = time_calls(fns, args.repeats, args.max_seconds, args.min_repeats)
            r[f"{who}_eager_us"], r[f"{who}_eager_n"] = ms * 1e3, n
        except Exception as e:
            r[f"{who}_error"] = _short_error(e)
    if r.get("ours_us") and r.get("fla_us"):
        r["speedup"] = r["fla_us"] / r["ours_us"]
    # Sanity: ours vs FLA from the same state (copies of the named slots only).
    if flash_kda is not None and fused_fwd is not None and not r.get("ours_error") and not r.get("fla_error"):
        try:
            s = sets[0]
            pool_a, pool_b = s["pool"].clone(), s["pool"].clone()
            s["out"].fill_(float("nan"))
            s["fla_out"].fill_(float("nan"))
            ours_fn(flash_kda, s, pool_a)()
            fla_fn(fused_fwd, s, pool_b)()
            torch.cuda.synchronize()
            r["ours_vs_fla_out_rel"] = _rel(s["out"], s["fla_out"])
            r["ours_vs_fla_state_rel"] = _rel(pool_a[s["slots"]], pool_b[s["slots"]])
            del pool_a, pool_b
        except Exception as e:
            r["sanity_error"] = _short_error(e)
    del sets
    torch.cuda.empty_cache()
    return r


def import_fused_recurrent():
    """FLA's fused_recurrent_kda_fwd (fla-core), or (None, reason)."""
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "gpu"))
    from kda_cases import import_chunk_kda  # imports fla safely (FLA_FLASH_KDA=0)

    chunk_kda, note = import_chunk_kda()
    if chunk_kda is None:
        return None, note
    try:
        import importlib

        return importlib.import_module("fla.ops.kda.fused_recurrent").fused_recurrent_kda_fwd, note
    except Exception as e:
        return None, f"fla.ops.kda.fused_recurrent: {_short_error(e)}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=os.environ.get("DECODE_BENCH_CASES", ""),
                   help="comma-separated filters; a case runs if every word of one filter is a word of "
                        "its name, e.g. 'bw,N64 t1' (default: all; env DECODE_BENCH_CASES)")
    p.add_argument("--repeats", type=int, default=200, help="timed calls / replays per measurement")
    p.add_argument("--min-repeats", type=int, default=50, help="fewest timed eager calls")
    p.add_argument("--graph-calls", type=int, default=20, help="calls captured per CUDA graph")
    p.add_argument("--max-seconds", type=float, default=2.0, help="budget of one measurement's timed part")
    p.add_argument("--time-budget", type=float, default=float(os.environ.get("DECODE_BENCH_TIME_BUDGET", "0") or 0),
                   help="stop starting new cases after this many seconds (0 = no limit)")
    p.add_argument("--no-fla", action="store_true", help="do not run FLA")
    p.add_argument("--no-ours", action="store_true", help="do not run flash_kda")
    p.add_argument("--json", default=None, help="write the results here (rewritten after every case)")
    p.add_argument("--list", action="store_true", help="list the cases (name, bytes per call) and exit")
    args = p.parse_args(argv)

    cases = select_cases(args.cases)
    if args.list:
        for name, N, H, t, state in cases:
            print(f"{name:28s} {case_bytes(N, H, t, state) / 1e6:10.2f} MB")
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
    l2_bytes = int(getattr(props, "L2_cache_size", 0) or 50 * 2**20)

    flash_kda = import_ours(args, needs="decode")
    fused_fwd = None
    args.fla_unavailable = "not run (--no-fla)"
    if not args.no_fla:
        fused_fwd, note = import_fused_recurrent()
        if fused_fwd is None:
            args.fla_unavailable = note[:400]
        elif note:
            print(f"fla: {note[:400]}")

    data = {
        "device": device, "capability": f"{props.major}.{props.minor}",
        "sm_count": props.multi_processor_count, "l2_bytes": l2_bytes,
        "torch": torch.__version__, "cuda_runtime": torch.version.cuda,
        "settings": {"repeats": args.repeats, "graph_calls": args.graph_calls,
                     "max_seconds": args.max_seconds, "lower_bound": LOWER_BOUND,
                     "statistic": "median; graph = replay time / calls, eager = per-call CUDA events"},
        "cases": [], "skipped_cases": [],
    }
    try:
        from importlib.metadata import version

        data["fla"] = version("fla-core") if fused_fwd is not None else None
        import triton

        data["triton"] = triton.__version__
    except Exception:
        pass
    if flash_kda is not None:
        data["flash_kda_build"] = flash_kda.build_info()

    def dump():
        if args.json:
            write_json(args.json, data)

    bw = copy_bandwidth()
    data["copy_bandwidth_tbps"] = bw
    print(f"GPU {device} ({props.multi_processor_count} SMs, L2 {l2_bytes / 2**20:.0f} MiB); "
          f"copy bandwidth {bw:.2f} TB/s")
    print(f"ours: {'flash_kda ' + data.get('flash_kda_build', '') if flash_kda else args.ours_unavailable}")
    print(f"FLA: {'fused_recurrent_kda_fwd (pooled, in place)' if fused_fwd else args.fla_unavailable}")
    dump()

    for name, N, H, t, state in cases:
        if args.time_budget and time.perf_counter() - t_start > args.time_budget:
            data["skipped_cases"].append(f"{name} (time budget {args.time_budget:g} s spent)")
            print(f"{name}: skipped (time budget spent)")
            dump()
            continue
        t0 = time.perf_counter()
        r = run_case(name, N, H, t, state, args, flash_kda, fused_fwd, l2_bytes, bw)
        r["wall_s"] = round(time.perf_counter() - t0, 1)
        data["cases"].append(r)
        dump()
        print(f"{name}: ours {_f(r.get('ours_us'), '{:.1f}')} us ({_f(r.get('ours_copy_ratio'), '{:.2f}')} of copy), "
              f"FLA {_f(r.get('fla_us'), '{:.1f}')} us, ours/FLA {_f(r.get('speedup'), '{:.2f}')}x, "
              f"eager {_f(r.get('ours_eager_us'), '{:.1f}')} / {_f(r.get('fla_eager_us'), '{:.1f}')} us, "
              f"out vs FLA {_f(r.get('ours_vs_fla_out_rel'), '{:.1e}')} [{r['wall_s']} s]"
              + "".join(f"\n    {w} error: {r[w + '_error']}" for w in ("ours", "fla")
                        if r.get(w + "_error") and not r[w + "_error"].startswith("not run")),
              flush=True)

    data["wall_s"] = round(time.perf_counter() - t_start, 1)
    dump()
    print()
    print(format_table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
