#!/usr/bin/env python3
"""Decode calls for Nsight Compute: ours and FLA's fused_recurrent_kda on the
same small case, so that their kernels' own durations can be compared
(issue #6: at N = 1 the graph time of a call is ours 5.0 us, FLA's 4.3 us;
this says whether the gap is inside the kernels or around them).

    ncu --clock-control none --cache-control all -k regex:"kda_decode|fused_recurrent" \\
        --metrics gpu__time_duration.sum,... --csv python3 bench/profile_decode.py --case "N1 H32 t1" > ncu.csv
    python3 bench/profile_decode.py --summarize ncu.csv

--calls calls of each (ours first, then FLA), rotating through input sets
with distinct pool slots. Nothing is checked here: the tests do that.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import sys

os.environ["FLA_FLASH_KDA"] = "0"
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def summarize(path: str) -> None:
    """Median of each metric per kernel (short name) from ncu --csv output."""
    text = open(path).read()
    start = text.find('"ID"')
    rows = list(csv.DictReader(io.StringIO(text[start:]))) if start >= 0 else []
    values: dict = {}
    for r in rows:
        name = r.get("Kernel Name", "?").split("(")[0].split("<")[0][-40:]
        try:
            v = float(r["Metric Value"].replace(",", ""))
        except (KeyError, ValueError):
            continue
        values.setdefault((name, r["Metric Name"], r.get("Metric Unit", "")), []).append(v)
    for (name, metric, unit), vs in sorted(values.items()):
        print(f"{name:40s} {metric:45s} {statistics.median(vs):12.2f} {unit:8s} (n={len(vs)})")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", default="N1 H32 t1", help="'N<n> H<h> t<t>' (fp32 pool)")
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--summarize", default=None, help="print the medians of an ncu --csv file and exit")
    args = p.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return
    import torch

    import bench_decode as bd
    import flash_kda

    N, H, t = (int(x[1:]) for x in args.case.split())
    sets = bd.make_sets(N, H, t, "fp32", n_sets=8, seed=7)
    fused_fwd, note = bd.import_fused_recurrent()
    for i in range(args.calls):
        bd.ours_fn(flash_kda, sets[i % len(sets)])()
    torch.cuda.synchronize()
    if fused_fwd is None:
        print(f"FLA unavailable: {note}", file=sys.stderr)
        return
    for i in range(args.calls):
        bd.fla_fn(fused_fwd, sets[i % len(sets)])()
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
