#!/usr/bin/env python3
"""Does the forward's time follow whole waves of CTAs? (issue #4, 64x512 cases)

One CTA per SM runs one (sequence, head) work item at a time, and in the
64x512 cases every item is the same length, so the CTAs move in near-lockstep
waves: H64 x 64 sequences = 4096 CTAs = 31.03 waves of 132 SMs, i.e. 32 item
times for 31.03 items of work per SM. If that is how the time goes, N x 512
sequences take ceil(N * H / SMs) item times: flat from N = 63 to 66 at H64
(4032..4224 CTAs, 31-32 waves), not rising with the work. (Session 16,
`*_s16c-*`: it rose with the work; the waves model was refuted.)

    python3 bench/probe_waves.py [--heads 64] [--counts 60,62,63,64,65,66,68] [--len 512]

Prints per N: ms, CTAs, waves (CTAs / SMs), ceil(waves), ms per ceil(wave),
ms per wave of work. Uses bench_fwd.py's inputs and timing (ours only).
"""
from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_fwd as bf  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heads", type=int, default=64)
    ap.add_argument("--counts", default="60,62,63,64,65,66,68")
    ap.add_argument("--len", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2, help="passes over the counts (interleaved)")
    args = ap.parse_args(argv)

    torch = bf._torch()
    import flash_kda

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    counts = [int(c) for c in args.counts.split(",") if c]
    times = {n: [] for n in counts}
    for r in range(args.rounds):
        for n in counts:
            s = bf.make_set(args.heads, [args.len] * n, True, seed=1000 * r + n)
            ms, _, _ = bf.time_calls([bf.ours_fn(flash_kda, s)], args.repeats, 4.0, 50)
            times[n].append(ms)
            del s
            torch.cuda.empty_cache()
    print(f"H{args.heads}, sequences of {args.len} tokens, {sms} SMs, value block 128 assumed "
          f"(one CTA per sequence and head); medians of {args.repeats} calls, min over {args.rounds} rounds")
    print(f"{'N':>4s} {'ms':>8s} {'CTAs':>6s} {'waves':>7s} {'ceil':>5s} {'ms/ceil':>8s} {'ms/wave':>8s}")
    for n in counts:
        ms = min(times[n])
        ctas = n * args.heads
        waves = ctas / sms
        c = math.ceil(waves)
        print(f"{n:4d} {ms:8.3f} {ctas:6d} {waves:7.2f} {c:5d} {ms / c:8.4f} {ms / waves:8.4f}")


if __name__ == "__main__":
    main()
