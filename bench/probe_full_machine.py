#!/usr/bin/env python3
"""Why is a chunk slower when every SM is busy? (issue #4, the 64x512 cases)

Times flash_kda.fwd (ours only) on shapes that separate three explanations
of the 64x512 cases' per-chunk rate (~1.65 us per chunk per SM against
T8192's ~1.32 with 96 of 132 SMs busy):

  - per-item cost (state load / store, prologue, the last chunk's drain):
    the same tokens cut into items of 256..4096 tokens; time per SM-chunk
    against 1 / item length gives the per-item cost as the slope;
  - the memory system or the clock under full load: one long item per SM
    (H132 T8192: 132 CTAs) against 96 CTAs (H96 T8192), same item length;
  - the states: 64x512 with and without fp32 states.

While each case loops, a thread samples nvidia-smi (SM clock, power), so
the table shows the clock each shape ran at.

    python3 bench/probe_full_machine.py [--json out.json] [--seconds 1.5]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_fwd as bf  # noqa: E402  (make_set, ours_fn, time_calls)
from gpu_clock import ClockSampler  # noqa: E402

D = 128
CHUNK = 16

# (name, H, lengths, varlen, states, value block or None)
CASES = [
    ("H96 T8192", 96, [8192], False, True, None),
    ("H132 T8192", 132, [8192], False, True, None),
    ("H96 64x512", 96, [512] * 64, True, True, None),
    ("H96 64x512 no states", 96, [512] * 64, True, False, None),
    ("H96 B64 T512 fixed", 96, [512] * 64, False, True, None),
    ("H96 128x256", 96, [256] * 128, True, True, None),
    ("H96 32x1024", 96, [1024] * 32, True, True, None),
    ("H96 16x2048", 96, [2048] * 16, True, True, None),
    ("H96 8x4096", 96, [4096] * 8, True, True, None),
    ("H96 64x512 bv64", 96, [512] * 64, True, True, "64"),
]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default=None)
    p.add_argument("--seconds", type=float, default=1.5, help="loop time per case (timed calls)")
    args = p.parse_args()
    import torch
    import flash_kda

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    rows = []
    for name, H, lengths, varlen, states, bv in CASES:
        s = bf.make_set(H, lengths, varlen, seed=1)
        if not varlen and len(lengths) > 1:  # fixed length, B > 1: [B, L, H, *]
            B, L = len(lengths), lengths[0]
            for key in ("q", "k", "v", "g", "out"):
                s[key] = s[key].view(B, L, H, D)
            s["beta"] = s["beta"].view(B, L, H)
        if not states:
            s["h0"] = None
            s["ht"] = None
        if bv:
            os.environ["FLASH_KDA_VALUE_BLOCK"] = bv
        fn = bf.ours_fn(flash_kda, s)
        with ClockSampler() as clk:
            ms, n, _ = bf.time_calls([fn], repeats=100000, max_seconds=args.seconds, min_repeats=20)
        os.environ.pop("FLASH_KDA_VALUE_BLOCK", None)
        mhz, watts = clk.median()
        width = int(bv) if bv else 128
        items = len(lengths) * H * (D // width)
        chunks = sum((L + CHUNK - 1) // CHUNK for L in lengths) * H * (D // width)
        busy = min(items, sms)
        us_per_chunk = ms * 1e3 * busy / chunks  # per SM busy, per chunk it runs
        rows.append({"case": name, "ms": ms, "n": n, "items": items, "item_tokens": lengths[0],
                     "ctas_busy": busy, "us_per_sm_chunk": us_per_chunk, "sm_mhz": mhz, "watts": watts})
        print(f"{name:24s} {ms:8.3f} ms  items {items:6d}  {us_per_chunk:6.3f} us/SM-chunk  "
              f"SM {mhz} MHz  {watts} W", flush=True)
        if args.json:  # rewritten after every case: a run cut short keeps what it measured
            with open(args.json, "w") as f:
                json.dump({"device": torch.cuda.get_device_name(0), "sm_count": sms, "cases": rows}, f, indent=2)
        del s, fn
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
