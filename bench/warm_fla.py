#!/usr/bin/env python3
"""Compile FLA's Triton kernels for the benchmark's shapes ahead of the
benchmark, in parallel worker processes, so that a fresh GPU machine gets
same-run FLA numbers inside one device call.

    python3 bench/warm_fla.py [--jobs 6] [--lower-bound-cases SPEC]
                              [--softplus-cases SPEC] [--decode-cases SPEC] [--tests]

SPEC is the benchmark's --cases filter ("" = all its cases, "none" = skip).

Each worker runs FLA once per task on the benchmark's own inputs
(bench_fwd.make_set / bench_decode.make_sets): that compiles every autotuning
config into TRITON_CACHE_DIR. The workers do NOT keep autotuning results
(FLA_CACHE_RESULTS=0, TRITON_CACHE_AUTOTUNING=0): they time configs on a
shared, busy GPU, so the benchmark process autotunes again on its own, from
compiled kernels only (seconds instead of ~70 s per shape). Nothing is timed
or checked here.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def tasks(args):
    sys.path.insert(0, HERE)
    import bench_decode
    import bench_fwd

    out = []
    if args.tests:  # the shapes of tests/gpu/test_gpu_fla.py (first: the tests start soonest)
        out += [("test", "lower_bound", name) for name in test_module().CASES]
    for gate, spec in (("lower_bound", args.lower_bound_cases), ("softplus", args.softplus_cases)):
        if spec != "none":
            out += [("fwd", gate, c[0]) for c in bench_fwd.select_cases(spec or None)]
    if args.decode_cases != "none":
        out += [("decode", "lower_bound", c[0]) for c in bench_decode.select_cases(args.decode_cases or None)]
    return out


def test_module():
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "gpu"))
    import test_gpu_fla

    return test_gpu_fla


def worker(spec: str) -> int:
    """Runs the tasks 'kind|gate|name;...' in this process."""
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "gpu"))
    import torch

    import bench_decode
    import bench_fwd
    from kda_cases import import_chunk_kda

    chunk_kda, note = import_chunk_kda()
    if chunk_kda is None:
        print(f"warm_fla: FLA unavailable: {note}")
        return 1
    fused = None
    for item in spec.split(";"):
        kind, gate, name = item.split("|")
        t0 = time.perf_counter()
        s = None
        try:
            if kind == "test":
                tests = test_module()
                tests.run_fla(chunk_kda, tests.make_inputs(tests.CASES[name]))
            elif kind == "fwd":
                bench_fwd.GATE = gate
                (_, H, lengths, varlen), = [c for c in bench_fwd.CASES if c[0] == name]
                s = bench_fwd.make_set(H, lengths, varlen, seed=7)
                bench_fwd.fla_fn(chunk_kda, s)()
            else:
                if fused is None:
                    fused, _ = bench_decode.import_fused_recurrent()
                (_, N, H, t, state), = [c for c in bench_decode.CASES if c[0] == name]
                s = bench_decode.make_sets(N, H, t, state, 1, seed=7)[0]
                bench_decode.fla_fn(fused, s)()
            torch.cuda.synchronize()
            print(f"warm_fla: {kind} {gate} {name}: {time.perf_counter() - t0:.1f} s", flush=True)
        except Exception as e:  # the benchmark reports FLA's errors; here only note them
            print(f"warm_fla: {kind} {gate} {name}: {type(e).__name__}: {str(e)[:200]}", flush=True)
        del s
        torch.cuda.empty_cache()
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=6, help="worker processes (default 6)")
    p.add_argument("--lower-bound-cases", default="", help="bench_fwd.py cases, FlashKDA's gate")
    p.add_argument("--softplus-cases", default="", help="bench_fwd.py --gate softplus cases")
    p.add_argument("--decode-cases", default="", help="bench_decode.py cases")
    p.add_argument("--tests", action="store_true", help="also the shapes of tests/gpu/test_gpu_fla.py")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        return worker(args.worker)

    todo = tasks(args)
    # Dealt round-robin, so that each worker gets a mix of shapes.
    jobs = max(1, min(args.jobs, len(todo)))
    groups = [todo[i::jobs] for i in range(jobs)]
    env = dict(os.environ, FLA_CACHE_RESULTS="0", TRITON_CACHE_AUTOTUNING="0", FLA_FLASH_KDA="0")
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", ";".join("|".join(t) for t in g)], env=env)
             for g in groups if g]
    rcs = [pr.wait() for pr in procs]
    print(f"warm_fla: {len(todo)} tasks in {len(procs)} workers, {time.perf_counter() - t0:.0f} s, "
          f"exit codes {rcs}", flush=True)
    return 0 if all(rc == 0 for rc in rcs) else 1


if __name__ == "__main__":
    sys.exit(main())
