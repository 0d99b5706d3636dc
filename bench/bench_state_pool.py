#!/usr/bin/env python3
"""Serving benchmark: slot-indexed state pools and checkpoints (issue #7).

A serving-like prefill: N sequences x L tokens packed (varlen, int64
cu_seqlens; --lengths mixed: lengths of mean L, multiples of the interval,
so that the sequences reach their checkpoints at different times), H heads,
K=V=128, fp32 states in a pool of P = 2N slots (random slot permutation),
lower_bound=-5. Per case, the variants:

  plain        fwd with dense [N] initial / final states (in place): the baseline
  slots        fwd with the pool and state_indices, in place (target <= 1.03 x plain)
  gather       torch gather (pool[idx]) -> plain fwd -> scatter (pool[idx] = ...):
               what serving engines do today
  slots+ckpt   slots + fp32 checkpoints every 64 tokens (target <= 1.10 x slots)
  slots+ckpt16 slots + bf16 checkpoints every 64 tokens
  slots+ckpt0  the checkpoint kernel with an interval longer than L: its loop
               and registers, no checkpoint written (splits the cost of
               checkpoints into kernel variant and stores)

and slots / plain once more from 2 x --repeats calls alternating between
the two (column "alt"), so that both see the same clock and temperature.

Each: warm-up (>= 10 calls), then the median of --repeats calls, each timed
with its own CUDA events.

--clocks S (> 0): afterwards each variant, and two writes of the checkpoint
bytes alone (fill32 / fill16: `fill_` of the fp32 / bf16 checkpoint tensors),
runs S seconds more while nvidia-smi samples the SM clock and board power
(bench/gpu_clock.py): the median MHz, W and the kernel's time in millions of
cycles per call show whether a variant is slower in time or in cycles (an
H200 under full load runs at its power limit, and bytes cost power).

    python3 bench/bench_state_pool.py [--heads 32,64] [--seqs 64] [--len 512]
                                      [--lengths equal|mixed] [--repeats 100] [--clocks S]
                                      [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_fwd  # noqa: E402
from gpu_clock import ClockSampler  # noqa: E402

D = 128


def sequence_lengths(N: int, L: int, interval: int, mixed: bool, gen, torch) -> list[int]:
    """N lengths of mean L: all L, or (mixed) multiples of `interval` drawn
    uniformly from [interval, 2L - interval], so that sequences reach their
    checkpoints at different times, as in serving (L a multiple of interval)."""
    if not mixed:
        return [L] * N
    steps = 2 * L // interval - 1
    return [interval * (1 + int(i)) for i in torch.randint(0, steps, (N,), generator=gen)]


def run_case(H: int, N: int, L: int, repeats: int, interval: int, mixed: bool, clock_seconds: float, torch,
             flash_kda) -> dict:
    dev = "cuda"
    P = 2 * N
    gen = torch.Generator(device="cpu").manual_seed(H * 1000 + N)
    lengths = sequence_lengths(N, L, interval, mixed, gen, torch)
    T = sum(lengths)

    def randn(*shape, dtype=torch.bfloat16, std=1.0):
        return (torch.randn(shape, generator=gen) * std).to(dtype).to(dev)

    q, k, v, g = (randn(1, T, H, D) for _ in range(4))
    beta = randn(1, T, H)
    A_log = randn(H, dtype=torch.float32)
    dt_bias = randn(H, D, dtype=torch.float32)
    out = torch.empty((1, T, H, D), dtype=torch.bfloat16, device=dev)
    cu = torch.tensor([0] + lengths, dtype=torch.int64).cumsum(0).to(dev)
    pool = randn(P, H, D, D, dtype=torch.float32, std=0.1)
    idx = torch.randperm(P, generator=gen)[:N].to(dev)
    dense = pool[idx].contiguous()
    per_seq = [n // interval for n in lengths]
    offsets = torch.tensor([0] + per_seq, dtype=torch.int64).cumsum(0).to(dev)
    ckpt32 = torch.empty((sum(per_seq), H, D, D), dtype=torch.float32, device=dev)
    ckpt16 = torch.empty((sum(per_seq), H, D, D), dtype=torch.bfloat16, device=dev)
    ckpt_none = torch.empty((1, H, D, D), dtype=torch.float32, device=dev)
    offsets_none = torch.zeros(N + 1, dtype=torch.int64, device=dev)
    interval_none = (max(lengths) // 16 + 1) * 16  # > every length: no checkpoint is due
    scale = D ** -0.5

    def fwd(**kw):
        flash_kda.fwd(q, k, v, g, beta, scale, out, A_log=A_log, dt_bias=dt_bias, lower_bound=-5.0,
                      cu_seqlens=cu, **kw)

    def plain():
        fwd(initial_state=dense, final_state=dense)

    def slots():
        fwd(initial_state=pool, final_state=pool, state_indices=idx)

    def gather():
        h = pool.index_select(0, idx)
        fwd(initial_state=h, final_state=h)
        pool.index_copy_(0, idx, h)

    def slots_ckpt():
        fwd(initial_state=pool, final_state=pool, state_indices=idx, checkpoints=ckpt32,
            checkpoint_offsets=offsets, checkpoint_interval=interval)

    def slots_ckpt16():
        fwd(initial_state=pool, final_state=pool, state_indices=idx, checkpoints=ckpt16,
            checkpoint_offsets=offsets, checkpoint_interval=interval)

    def slots_ckpt_none():
        fwd(initial_state=pool, final_state=pool, state_indices=idx, checkpoints=ckpt_none,
            checkpoint_offsets=offsets_none, checkpoint_interval=interval_none)

    variants = {"plain": plain, "slots": slots, "gather": gather, "slots+ckpt": slots_ckpt,
                "slots+ckpt16": slots_ckpt16, "slots+ckpt0": slots_ckpt_none}
    ms = {name: bench_fwd.time_calls([fn], repeats, max_seconds=float("inf"), min_repeats=repeats)[0]
          for name, fn in variants.items()}
    # plain and slots alternating call by call (the same clock and thermal
    # state for both; the separate medians above drift by a few % between runs)
    _, _, alt = bench_fwd.time_calls([plain, slots], 2 * repeats, max_seconds=float("inf"), min_repeats=2 * repeats)
    alternating = {"plain": statistics.median(alt[0::2]), "slots": statistics.median(alt[1::2])}
    clocks = {}
    if clock_seconds > 0:
        variants.update({"fill32": lambda: ckpt32.fill_(0.5), "fill16": lambda: ckpt16.fill_(0.5)})
        for name, fn in variants.items():
            with ClockSampler() as clk:
                t, n, _ = bench_fwd.time_calls([fn], 10**6, max_seconds=clock_seconds, min_repeats=repeats)
            mhz, watts = clk.median()
            clocks[name] = {"ms": t, "calls": n, "sm_mhz": mhz, "watts": watts,
                            "mcycles": None if mhz is None else t * mhz / 1e3}
    return {
        "case": f"H{H} varlen {N}x{'~' if mixed else ''}{L} P={P}",
        "H": H, "N": N, "L": L, "lengths": lengths, "P": P, "checkpoint_interval": interval,
        "ms": ms,
        "slots_over_plain": ms["slots"] / ms["plain"],
        "alternating_ms": alternating,
        "slots_over_plain_alternating": alternating["slots"] / alternating["plain"],
        "gather_over_plain": ms["gather"] / ms["plain"],
        "ckpt_over_slots": ms["slots+ckpt"] / ms["slots"],
        "ckpt16_over_slots": ms["slots+ckpt16"] / ms["slots"],
        "ckpt0_over_slots": ms["slots+ckpt0"] / ms["slots"],
        "checkpoint_bytes": {"fp32": ckpt32.numel() * 4, "bf16": ckpt16.numel() * 2},
        "clocks": clocks,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heads", default="32,64")
    ap.add_argument("--seqs", type=int, default=64)
    ap.add_argument("--len", type=int, default=512)
    ap.add_argument("--interval", type=int, default=64)
    ap.add_argument("--lengths", choices=("equal", "mixed"), default="equal",
                    help="equal: every sequence --len tokens; mixed: multiples of --interval of mean --len")
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--clocks", type=float, default=0.0, metavar="S",
                    help="also run each variant S seconds under nvidia-smi clock / power sampling")
    ap.add_argument("--json", default=None)
    # bench/ab_bench.sh passes --no-fla to every script: this one runs no FLA.
    ap.add_argument("--no-fla", action="store_true", help="accepted for ab_bench.sh (no FLA here)")
    args = ap.parse_args()
    if args.lengths == "mixed" and args.len % args.interval:
        ap.error(f"--lengths mixed: --len {args.len} must be a multiple of --interval {args.interval}")
    import torch

    import flash_kda

    if not torch.cuda.is_available() or not flash_kda.cuda_available():
        print("bench_state_pool: no CUDA device with flash_kda kernels; nothing measured")
        return 0
    results = []
    print(f"{'case':28s} {'plain':>8s} {'slots':>8s} {'gather':>8s} {'+ckpt':>8s} {'+ckpt16':>8s} {'+ckpt0':>8s}"
          f" {'slots/plain':>12s} {'alt':>6s} {'gather/plain':>13s} {'ckpt/slots':>11s} {'ckpt0/slots':>12s}")
    for H in (int(h) for h in args.heads.split(",")):
        r = run_case(H, args.seqs, args.len, args.repeats, args.interval, args.lengths == "mixed", args.clocks,
                     torch, flash_kda)
        results.append(r)
        ms = r["ms"]
        print(f"{r['case']:28s} {ms['plain']:8.3f} {ms['slots']:8.3f} {ms['gather']:8.3f}"
              f" {ms['slots+ckpt']:8.3f} {ms['slots+ckpt16']:8.3f} {ms['slots+ckpt0']:8.3f}"
              f" {r['slots_over_plain']:12.3f} {r['slots_over_plain_alternating']:6.3f}"
              f" {r['gather_over_plain']:13.3f} {r['ckpt_over_slots']:11.3f}"
              f" {r['ckpt0_over_slots']:12.3f}")
    for r in results:
        if r["clocks"]:
            print(f"\n{r['case']}: each variant for {args.clocks:g} s under clock / power sampling")
            print(f"{'variant':14s} {'ms':>8s} {'SM MHz':>8s} {'W':>6s} {'Mcycles':>8s}")
            for name, c in r["clocks"].items():
                mhz = "-" if c["sm_mhz"] is None else f"{c['sm_mhz']:.0f}"
                watts = "-" if c["watts"] is None else f"{c['watts']:.0f}"
                mcyc = "-" if c["mcycles"] is None else f"{c['mcycles']:.3f}"
                print(f"{name:14s} {c['ms']:8.3f} {mhz:>8s} {watts:>6s} {mcyc:>8s}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "flash_kda_build": flash_kda.build_info(),
                       "cases": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
