#!/usr/bin/env python3
"""Does a warm GPU run our forward slower? (issue #4, the 64x512 margins)

Session 16 timed the same build of the H64 64x512 case at 1.636 ms inside a
full bench/run_device.sh (after tests and the sanitizer) and at 1.575 ms in
a call of its own, while FLA read 7.17-7.18 ms in both. Our kernel runs at
the H200's 700 W limit, where the clock follows the power, and leakage power
grows with temperature. This probe times ours and FLA on a case, cold, then
after --soak seconds of back-to-back calls of ours, then once more, with the
SM clock, board power (median while timing) and GPU temperature per line.

    python3 bench/probe_heat.py [--cases "H64 varlen 64x512"] [--soak 60] [--no-fla]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_fwd as bf  # noqa: E402
from gpu_clock import ClockSampler, smi_query  # noqa: E402


def temperature() -> str:
    t = smi_query("temperature.gpu")
    return t[0] if t else "n/a"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="H64 varlen 64x512")
    ap.add_argument("--soak", type=float, default=60.0, help="seconds of back-to-back calls of ours")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--no-fla", action="store_true")
    args = ap.parse_args(argv)

    torch = bf._torch()
    import flash_kda
    chunk_kda = None
    if not args.no_fla:
        sys.path.insert(0, os.path.join(bf.HERE, "..", "tests", "gpu"))
        from kda_cases import import_chunk_kda

        chunk_kda, note = import_chunk_kda()
        if chunk_kda is None:
            print(f"FLA: {note[:200]}: ours only")

    cases = bf.select_cases(args.cases)
    sets = {name: bf.make_set(H, lengths, varlen, seed=7) for name, H, lengths, varlen in cases}
    rows = []

    def measure(phase):
        for name, *_ in cases:
            s = sets[name]
            fns = {"ours": bf.ours_fn(flash_kda, s)}
            if chunk_kda is not None:
                fns["FLA"] = bf.fla_fn(chunk_kda, s)
            for impl, fn in fns.items():
                t0 = temperature()
                with ClockSampler() as clk:
                    ms, n, _ = bf.time_calls([fn], args.repeats, 4.0, 50)
                mhz, watts = clk.median()
                rows.append((phase, name, impl, ms, mhz, watts, t0, temperature()))
                print(f"{phase:6s} {name:20s} {impl:5s} {ms:7.3f} ms  {mhz} MHz  {watts} W  {t0} -> {temperature()} C",
                      flush=True)

    measure("cold")
    name0 = cases[0][0]
    fn = bf.ours_fn(flash_kda, sets[name0])
    t_end = time.perf_counter() + args.soak
    calls = 0
    with ClockSampler() as clk:
        while time.perf_counter() < t_end:
            for _ in range(50):
                fn()
            torch.cuda.synchronize()
            calls += 50
    mhz, watts = clk.median()
    print(f"soak   {name0}: {calls} calls in {args.soak:.0f} s, {mhz} MHz, {watts} W, now {temperature()} C", flush=True)
    measure("warm")
    measure("warm2")

    print("\nphase  case                 impl       ms    MHz     W  temp C")
    for phase, name, impl, ms, mhz, watts, t0, t1 in rows:
        print(f"{phase:6s} {name:20s} {impl:5s} {ms:7.3f} {mhz or 0:6.0f} {watts or 0:5.0f}  {t0}->{t1}")
    if chunk_kda is not None:
        for phase in ("cold", "warm", "warm2"):
            for name, *_ in cases:
                d = {impl: ms for p, n, impl, ms, *_ in rows if p == phase and n == name}
                col = bf.gpu_column(torch.cuda.get_device_name())
                fk, _ = bf.flashkda_speedup(name, col)
                sp = d["FLA"] / d["ours"]
                print(f"{phase:6s} {name:20s} ours/FLA {sp:.2f}x" + (f", / FlashKDA's {fk:.2f}x = {sp / fk:.3f}" if fk else ""))


if __name__ == "__main__":
    main()
