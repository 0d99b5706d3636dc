#!/usr/bin/env python3
"""Where a decode call's graph time goes (issue #6): inside the kernels or
between them. For each case, ours and FLA's fused_recurrent_kda each run as
bench_decode.py times them (a CUDA graph of --graph-calls calls rotating
through input sets, state from HBM), but replayed under torch.profiler
(CUPTI), which records every kernel node's start and end. Printed per case
and implementation: graph time per call (CUDA events, as bench_decode.py),
kernels per call, the median kernel duration and the median gap from one
kernel's end to the next one's start inside a replay.

    python3 bench/probe_decode_graph.py [--cases "N1 H32 t1,N8 H64 t1"] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

os.environ["FLA_FLASH_KDA"] = "0"
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_decode as bd  # noqa: E402
from bench_fwd import _torch, import_ours  # noqa: E402


def kernel_timeline(graph, replays: int):
    """(name, start_us, end_us) of every kernel in `replays` replays."""
    torch = _torch()
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(replays):
            graph.replay()
        torch.cuda.synchronize()
    out = []
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            out.append((e.name, e.time_range.start, e.time_range.end))  # kernels, memsets, copies
    return sorted(out, key=lambda x: x[1])


def summarize(events, calls: int, replays: int):
    durations = [end - start for _, start, end in events]
    gaps = [b[1] - a[2] for a, b in zip(events, events[1:])]
    # gaps larger than a few us separate replays (host launch of the next one)
    inner = [g for g in gaps if g < 5.0]
    names = sorted({n.split("(")[0].split("<")[0][-48:] for n, _, _ in events})
    return {
        "kernels_per_call": len(events) / max(1, calls * replays),
        "kernel_us_median": statistics.median(durations) if durations else None,
        "gap_us_median": statistics.median(inner) if inner else None,
        "gap_us_p90": sorted(inner)[int(0.9 * (len(inner) - 1))] if inner else None,
        "kernels": names,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="N1 H32 t1,N1 H64 t1,N8 H32 t1,N8 H64 t1")
    p.add_argument("--graph-calls", type=int, default=20)
    p.add_argument("--replays", type=int, default=20)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch = _torch()
    args.no_ours = False
    flash_kda = import_ours(args, "decode")
    why = getattr(args, "ours_unavailable", "")
    fused_fwd, note = bd.import_fused_recurrent()
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    results = []
    for name, N, H, t, state in bd.select_cases(args.cases):
        if not name.startswith("grid"):
            continue
        nbytes = bd.case_bytes(N, H, t, state)
        n_sets = bd.input_set_count(nbytes, l2)
        sets = bd.make_sets(N, H, t, state, n_sets, seed=99 + N + H + t)
        row = {"name": name}
        for who, fn_of, impl in (("ours", bd.ours_fn, flash_kda), ("fla", bd.fla_fn, fused_fwd)):
            if impl is None:
                row[who] = {"error": why if who == "ours" else note}
                continue
            fns = [fn_of(impl, s) for s in sets]
            ms, _ = bd.time_graph(fns, args.graph_calls, 200, 1.0)
            graph = bd.capture_graph(fns, args.graph_calls)
            for _ in range(3):
                graph.replay()
            ev = kernel_timeline(graph, args.replays)
            row[who] = {"graph_us_per_call": ms * 1e3, **summarize(ev, args.graph_calls, args.replays)}
            del graph
        results.append(row)
        del sets
        torch.cuda.empty_cache()
    print(f"{'case':22s} {'who':5s} {'graph us':>9s} {'kern/call':>9s} {'kernel us':>9s} {'gap us':>7s} {'gap p90':>7s}")
    for r in results:
        for who in ("ours", "fla"):
            d = r.get(who, {})
            if "error" in d:
                print(f"{r['name']:22s} {who:5s} n/a: {d['error'][:80]}")
                continue
            f = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
            print(f"{r['name']:22s} {who:5s} {f(d['graph_us_per_call']):>9s} {f(d['kernels_per_call']):>9s} "
                  f"{f(d['kernel_us_median']):>9s} {f(d['gap_us_median']):>7s} {f(d['gap_us_p90']):>7s}  "
                  f"{', '.join(d['kernels'])[:90]}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": torch.cuda.get_device_name(), "cases": results}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
