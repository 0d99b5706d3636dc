#!/usr/bin/env python3
"""Where a forward work item's time goes with every SM busy (issue #4).

Needs a profiling build of flash_kda (CMake -DFLASH_KDA_TIMELINE=ON, see
src/cuda/sm90/timeline.cuh): each CTA then writes its SM id, globaltimer at
entry and end, and SM-cycle marks of its phases over the first 128 bytes of
its first final-state row. This script runs a few shapes (fp32 states,
value block 128 forced: one CTA per (sequence, head)) and prints, per shape:

  - the kernel's span and per-CTA duration (globaltimer, us);
  - the median cycle of each phase mark since the CTA's entry;
  - the steady chunk (chunk 1 done - chunk 0 done) and the per-item
    overhead: duration - chunks x steady chunk;
  - the gap on an SM between one CTA's end and the next CTA's entry.

    pip install --target /tmp/tl_site --config-settings=cmake.define.FLASH_KDA_TIMELINE=ON ... .
    PYTHONPATH=/tmp/tl_site python3 bench/probe_timeline.py [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_fwd as bf  # noqa: E402

D = 128
MARKS = ["setup", "state_issued", "prep_loaded0", "prep_handed0", "chunk0", "chunk1", "last_chunk", "stored",
         "ckpt_begin", "ckpt_end", "ckpt_next"]  # the last three: checkpoint kernels only
CKPT_INTERVAL = 64

# (name, H, lengths, varlen, initial state, checkpoint dtype or None)
CASES = [
    ("H96 64x512", 96, [512] * 64, True, True, None),
    ("H96 64x512 no initial", 96, [512] * 64, True, False, None),
    ("H96 64x512 fp32 ckpt/64", 96, [512] * 64, True, True, "float32"),
    ("H96 64x512 bf16 ckpt/64", 96, [512] * 64, True, True, "bfloat16"),
    ("H96 T8192", 96, [8192], False, True, None),
    ("H132 T8192", 132, [8192], False, True, None),
]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def analyse(rec, lengths):
    """rec: int64 [N, H, 11] records -> summary dict."""
    rows = rec.reshape(-1, rec.shape[-1]).tolist()
    n_chunks = (lengths[0] + 15) // 16
    smid = [r[0] for r in rows]
    t0 = [r[1] for r in rows]
    t1 = [r[2] for r in rows]
    marks = {m: [r[3 + i] for r in rows] for i, m in enumerate(MARKS)}
    dur_us = [(b - a) / 1e3 for a, b in zip(t0, t1)]
    cyc_total = marks["stored"]
    mhz = statistics.median(c / (d * 1e3) * 1e3 for c, d in zip(cyc_total, dur_us) if d > 0)
    steady = [b - a for a, b in zip(marks["chunk0"], marks["chunk1"])]
    loop = [b - a for a, b in zip(marks["chunk0"], marks["last_chunk"])]
    per_chunk = [l / max(1, n_chunks - 1) for l in loop]
    overhead = [t - n_chunks * s for t, s in zip(cyc_total, per_chunk)]
    by_sm = {}
    for s, a, b in zip(smid, t0, t1):
        by_sm.setdefault(s, []).append((a, b))
    gaps = []
    for v in by_sm.values():
        v.sort()
        gaps += [(v[i + 1][0] - v[i][1]) / 1e3 for i in range(len(v) - 1)]
    out = {
        "ctas": len(rows), "sms": len(by_sm), "span_us": (max(t1) - min(t0)) / 1e3,
        "cta_us_median": statistics.median(dur_us), "cta_us_p10": pct(dur_us, 0.1), "cta_us_p90": pct(dur_us, 0.9),
        "mhz_from_marks": mhz,
        "marks_median_cycles": {m: statistics.median(v) for m, v in marks.items()},
        "chunk1_minus_chunk0": statistics.median(steady),
        "loop_cycles_per_chunk": statistics.median(per_chunk),
        "overhead_cycles": statistics.median(overhead),
        "sm_gap_us_median": statistics.median(gaps) if gaps else None,
        "sm_gap_us_p90": pct(gaps, 0.9) if gaps else None,
    }
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    import torch
    import flash_kda

    os.environ["FLASH_KDA_VALUE_BLOCK"] = "128"
    results = []
    for name, H, lengths, varlen, initial, ckpt in CASES:
        s = bf.make_set(H, lengths, varlen, seed=3)
        if not initial:
            s["h0"] = None
        if not ckpt:
            fn = bf.ours_fn(flash_kda, s)
        else:
            per = [L // CKPT_INTERVAL for L in lengths]
            offsets = torch.tensor([sum(per[:i]) for i in range(len(per) + 1)], dtype=torch.int64, device="cuda")
            ckpts = torch.empty(sum(per), H, D, D, dtype=getattr(torch, ckpt), device="cuda")

            def fn(s=s, offsets=offsets, ckpts=ckpts):
                flash_kda.fwd(s["q"], s["k"], s["v"], s["g"], s["beta"], D ** -0.5, s["out"],
                              A_log=s["A_log"], dt_bias=s["dt_bias"], lower_bound=bf.LOWER_BOUND,
                              initial_state=s["h0"], final_state=s["ht"], cu_seqlens=s["cu_seqlens"],
                              checkpoints=ckpts, checkpoint_offsets=offsets, checkpoint_interval=CKPT_INTERVAL)
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        ms, n, _ = bf.time_calls([fn], repeats=20, max_seconds=1.0, min_repeats=5, warmup=2)
        s["ht"].fill_(float("nan"))
        fn()
        torch.cuda.synchronize()
        rec = s["ht"].view(torch.int64).view(len(lengths), H, D, D // 2)[:, :, 0, :3 + len(MARKS)].cpu()
        r = {"case": name, "ms": ms, **analyse(rec, lengths)}
        results.append(r)
        mk = r["marks_median_cycles"]
        print(f"== {name}: {ms:.3f} ms (event median), span {r['span_us']:.1f} us, {r['ctas']} CTAs on {r['sms']} SMs, "
              f"~{r['mhz_from_marks']:.0f} MHz")
        print(f"   CTA {r['cta_us_median']:.2f} us (p10 {r['cta_us_p10']:.2f}, p90 {r['cta_us_p90']:.2f}); "
              f"SM gap {r['sm_gap_us_median']} us median, p90 {r['sm_gap_us_p90']}")
        print("   marks (cycles since entry): " + ", ".join(f"{m} {v:.0f}" for m, v in mk.items()))
        print(f"   steady chunk {r['chunk1_minus_chunk0']:.0f} cyc (loop mean {r['loop_cycles_per_chunk']:.0f}), "
              f"per-item overhead {r['overhead_cycles']:.0f} cyc", flush=True)
        if ckpt:
            print(f"   first checkpoint: stores issued in {mk['ckpt_end'] - mk['ckpt_begin']:.0f} cyc, "
                  f"the chunk after it {mk['ckpt_next'] - mk['ckpt_end']:.0f} cyc", flush=True)
        del s, fn
        if ckpt:
            del ckpts
        torch.cuda.empty_cache()
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"device": torch.cuda.get_device_name(0), "cases": results}, f, indent=2)


if __name__ == "__main__":
    main()
