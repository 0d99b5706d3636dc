#!/usr/bin/env python3
"""Stall samples and executed instructions of an ncu profile, per source line
of the forward kernel, through its inline chain.

ncu's CUDA view attributes an inlined helper's instructions to the helper's
own line (device_utils.cuh, cute/...). This joins ncu's per-SASS table with
the line info of `nvdisasm -gi` (the same cubin: build it locally with
bench/tools/disasm_tu.sh from the same sources and nvcc version, and check
that the instruction counts agree) and keys every instruction by its
outermost chunk_prep.cuh / recurrence.cuh frames, so a phase's cost is one row.

    python3 bench/tools/ncu_attribute.py TABLES_DIR KERNEL.dis CTA_CHUNKS [--depth 2] [--top 40]

TABLES_DIR: one case's folder from bench/profile_device.sh
(ncu_<case>_tables.tar.xz: source_sass.csv); CTA_CHUNKS: CTAs x chunks per
CTA of the profiled call (anchor: 96 x 512 = 49152; anchor64 / softplus64:
128 x 512 = 65536), so counts print per CTA-chunk. Roles: prep, rec
(recurrence), kernel (the rest).
"""
import argparse
import collections
import csv
import os
import re

from ncu_top_lines import number  # same folder: the script's own sys.path entry

FRAME = re.compile(r'//## File "([^"]+)", line (\d+)')
ADDR = re.compile(r"/\*([0-9a-f]{4,6})\*/")
ROLE_FILES = {"chunk_prep.cuh": "prep", "recurrence.cuh": "rec"}


def inline_chains(dis_path):
    """SASS offset -> inline chain [(file, line), ...], innermost first."""
    chains, pending, chain = {}, [], []
    with open(dis_path) as f:
        for line in f:
            m = FRAME.search(line)
            if m:
                pending.append((os.path.basename(m.group(1)), int(m.group(2))))
                continue
            m = ADDR.search(line)
            if m:
                if pending:
                    chain, pending = pending, []
                chains[int(m.group(1), 16)] = chain
    return chains


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tables")
    ap.add_argument("dis")
    ap.add_argument("cta_chunks", type=float)
    ap.add_argument("--depth", type=int, default=2, help="outermost kernel-source frames kept in the key")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--src", default=os.path.join(os.path.dirname(__file__), "..", "..", "src", "cuda", "sm90"))
    args = ap.parse_args()

    chains = inline_chains(args.dis)
    with open(os.path.join(args.tables, "source_sass.csv")) as f:
        rows = list(csv.reader(f))
    head = next(i for i, r in enumerate(rows) if r and r[0] == "Address")
    col = {}
    for i, name in enumerate(rows[head]):
        col.setdefault(name, i)
    reasons = [c for c in rows[head] if c.startswith("stall_") and "Not Issued" not in c]
    sass = sorted((int(r[0], 16), r) for r in rows[head + 1:] if r and r[0].startswith("0x"))
    if len(sass) != len(chains):
        print(f"warning: ncu has {len(sass)} instructions, the disassembly {len(chains)}: not the same cubin?")
    base = sass[0][0]
    src = {}
    for name in ROLE_FILES:
        path = os.path.join(args.src, name)
        src[name] = open(path).read().split("\n") if os.path.exists(path) else []

    by_key = collections.defaultdict(collections.Counter)
    by_role = collections.defaultdict(collections.Counter)
    total = collections.Counter()
    for addr, r in sass:
        frames = [fr for fr in reversed(chains.get(addr - base, [])) if fr[0] in ROLE_FILES]  # outermost first
        role = ROLE_FILES[frames[0][0]] if frames else "kernel"
        key = (role, tuple(frames[:args.depth]))
        samples = number(r[col["Warp Stall Sampling (All Samples)"]])
        executed = number(r[col["Instructions Executed"]])
        for c in (by_key[key], by_role[role], total):
            c["samples"] += samples
            c["executed"] += executed
            for reason in reasons:
                c[reason] += number(r[col[reason]])

    def top_reasons(c, n):
        best = sorted(((c[x], x) for x in reasons), reverse=True)[:n]
        return " ".join(f"{x[6:]}={100 * v / max(c['samples'], 1):.0f}%" for v, x in best)

    per = args.cta_chunks
    print(f"all: {total['samples']:.0f} stall samples, {total['executed'] / per:.0f} warp instructions per CTA-chunk")
    for role, c in sorted(by_role.items()):
        print(f"{role:6s} {100 * c['samples'] / total['samples']:5.1f}% of samples, "
              f"{c['executed'] / per:6.0f} instructions per CTA-chunk | {top_reasons(c, 6)}")
    print()
    for (role, frames), c in sorted(by_key.items(), key=lambda kv: -kv[1]["samples"])[:args.top]:
        where = " > ".join(f"{f.split('.')[0]}:{line}" for f, line in frames)
        text = ""
        if frames and src.get(frames[-1][0]):
            text = src[frames[-1][0]][frames[-1][1] - 1].strip()[:60]
        print(f"{100 * c['samples'] / total['samples']:5.1f}% {c['executed'] / per:6.0f}/chunk {role:6s} "
              f"{where:34s} {text:60s} {top_reasons(c, 3)}")


if __name__ == "__main__":
    main()
