#!/usr/bin/env python3
"""Table of a before/after benchmark (bench/ab_bench.sh): for each case, the
median over rounds of ours_ms (bench_decode.py: ours_us / 1000;
bench_state_pool.py: each call variant's ms) per side, and current / base.

    python3 bench/ab_compare.py base=a0.json current=b0.json base=a1.json ...
"""
import json
import statistics
import sys


def main(argv):
    times: dict[str, dict[str, list[float]]] = {}
    order: list[str] = []
    build: dict[str, str] = {}
    for arg in argv:
        side, _, path = arg.partition("=")
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            print(f"{path}: {e}", file=sys.stderr)
            continue
        build[side] = str(data.get("flash_kda_build", ""))
        for case in data.get("cases", []):
            # bench_state_pool.py: one row per call variant ("ms": {variant: ms})
            if isinstance(case.get("ms"), dict):
                for variant, ms in case["ms"].items():
                    name = f"{case['case']} {variant}"
                    if name not in order:
                        order.append(name)
                    times.setdefault(name, {}).setdefault(side, []).append(ms)
                continue
            # bench_fwd.py: ours_ms; bench_decode.py: ours_us (its graph time)
            ms = case.get("ours_ms")
            if ms is None and case.get("ours_us") is not None:
                ms = case["ours_us"] / 1e3
            if ms is None:
                continue
            if case["name"] not in order:
                order.append(case["name"])
            times.setdefault(case["name"], {}).setdefault(side, []).append(ms)
    print("| case | base ms | current ms | current / base | rounds |")
    print("|---|---:|---:|---:|---:|")
    for name in order:
        t = times[name]
        if "base" not in t or "current" not in t:
            continue
        a, b = statistics.median(t["base"]), statistics.median(t["current"])
        print(f"| {name} | {a:.3f} | {b:.3f} | {b / a:.3f} | {len(t['base'])}/{len(t['current'])} |")
    for side, info in build.items():
        print(f"\n{side}: {info}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
