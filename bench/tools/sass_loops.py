#!/usr/bin/env python3
"""Shape of the forward kernel's two hot loops in SASS, before a GPU run.

    bash bench/tools/disasm_tu.sh bv128 /tmp/new.dis      # (in a base tree too)
    python3 bench/tools/sass_loops.py /tmp/new.dis [/tmp/base.dis]

Finds the recurrence's chunk loop (the loop around the hand-off's named
barrier, `BAR.SYNC R, 0x140` / `0xc0` / `0x80` at bv128 / 64 / 32; the prep
pairs' own barriers count 0x40)
and the prep's (the loop around its `BAR.ARV`), and prints per loop: the
instruction count and the instructions that have cost time when they
appeared there (session 12): S2R (a special register re-read: ptxas
rematerialising threadIdx-derived values), WARPSYNC (ptxas unsure the warp is
converged at a barrier), R2UR (values leaving the uniform datapath), LDL / STL
(spills), CALL. With a second file, the two side by side: a change that is
meant to leave the loops alone should show equal rows.
"""
from __future__ import annotations

import re
import sys

WATCH = ("S2R", "S2UR", "WARPSYNC", "R2UR", "LDL", "STL", "CALL", "BAR.SYNC", "HGMMA", "HMMA")
INSTR = re.compile(r"/\*[0-9a-f]{4,6}\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)")
LABEL = re.compile(r"\s*(\.L_x_\d+):")
BRANCH = re.compile(r"BRA `\((\.L_x_\d+)\)")


def instructions(path):
    """[(text, opcode or None)] of the SASS listing (labels kept, line info dropped)."""
    out = []
    for line in open(path):
        if LABEL.match(line):
            out.append((line, None))
            continue
        m = INSTR.search(line)
        if m:
            out.append((line, m.group(1)))
    return out


def enclosing_loop(ins, at):
    """The innermost backward branch after `at` whose target precedes it: (start, end)."""
    labels = {LABEL.match(t).group(1): i for i, (t, op) in enumerate(ins) if op is None}
    for j in range(at, len(ins)):
        m = BRANCH.search(ins[j][0])
        if m and labels.get(m.group(1), len(ins)) < at:
            return labels[m.group(1)], j
    return None


def loop_stats(ins, start, end):
    ops = [op for _, op in ins[start:end + 1] if op]
    stats = {"instructions": len(ops)}
    for w in WATCH:
        stats[w] = sum(1 for op in ops if op == w or op.startswith(w + "."))
    return stats


def loop_span(ins, name):
    """(start, end) in `ins` of the "recurrence chunk loop" or the "prep chunk
    loop", or None."""
    if name == "recurrence chunk loop":
        hits = [i for i, (t, op) in enumerate(ins)
                if op and op.startswith("BAR.SYNC") and re.search(r", 0x(?!40 )[0-9a-f]+ ;", t)]
    else:
        hits = [i for i, (t, op) in enumerate(ins) if op and op.startswith("BAR.ARV")]
    return next((span for span in (enclosing_loop(ins, at) for at in hits) if span), None)


def loops(path):
    ins = instructions(path)
    found = {}
    for name in ("recurrence chunk loop", "prep chunk loop"):
        span = loop_span(ins, name)
        if span:
            found[name] = loop_stats(ins, *span)
    return found


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    results = [loops(p) for p in sys.argv[1:3]]
    for name in ("recurrence chunk loop", "prep chunk loop"):
        rows = [r.get(name) for r in results]
        if not any(rows):
            print(f"{name}: not found")
            continue
        print(f"{name}:" + ("" if len(rows) == 1 else f"   {sys.argv[1]}  |  {sys.argv[2]}"))
        for key in ("instructions",) + WATCH:
            vals = ["-" if r is None else str(r[key]) for r in rows]
            flag = "  <-" if len(set(vals)) > 1 else ""
            print(f"  {key:13s} " + "  ".join(f"{v:>7s}" for v in vals) + flag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
