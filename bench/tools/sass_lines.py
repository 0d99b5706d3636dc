#!/usr/bin/env python3
"""Where a hot loop's SASS instructions come from, by kernel source line.

    bash bench/tools/disasm_tu.sh bv128 /tmp/new.dis      # nvdisasm -gi listing
    python3 bench/tools/sass_lines.py /tmp/new.dis [prep|recurrence] [top]

Takes the loop sass_loops.py finds (the prep's chunk loop by default) and
counts its instructions per innermost source location (file, line) of the
`-gi` line info, with the opcodes of each, largest first; then the opcode
totals. Static counts: a loop that holds both elementwise variants counts
both.
"""
from __future__ import annotations

import collections
import re
import sys

import sass_loops

FILE = re.compile(r'//## File "([^"]+)", line (\d+)')


def located_instructions(path):
    """[(text, opcode or None, (file, line) or None)]: the first File comment
    after an instruction is the innermost location of the next one."""
    out, loc, fresh = [], None, True
    for line in open(path):
        m = FILE.search(line)
        if m:
            if fresh:
                loc, fresh = (m.group(1).rsplit("/", 1)[-1], int(m.group(2))), False
            continue
        if sass_loops.LABEL.match(line):
            out.append((line, None, loc))
            continue
        m = sass_loops.INSTR.search(line)
        if m:
            out.append((line, m.group(1), loc))
            fresh = True
    return out


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    which = sys.argv[2] if len(sys.argv) > 2 else "prep"
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    items = located_instructions(sys.argv[1])
    ins = [(t, op) for t, op, _ in items]
    span = sass_loops.loop_span(ins, "prep chunk loop" if which == "prep" else "recurrence chunk loop")
    if span is None:
        print(f"{which} loop not found")
        return 1
    per_line = collections.defaultdict(collections.Counter)
    for _, op, loc in items[span[0]:span[1] + 1]:
        if op:
            per_line[loc][op.split(".")[0]] += 1
    total = collections.Counter()
    for ops in per_line.values():
        total.update(ops)
    print(f"{which} loop: {sum(total.values())} instructions")
    for loc, ops in sorted(per_line.items(), key=lambda kv: -sum(kv[1].values()))[:top]:
        where = f"{loc[0]}:{loc[1]}" if loc else "?"
        print(f"{sum(ops.values()):6d}  {where:32s} " + " ".join(f"{o} {n}" for o, n in ops.most_common(6)))
    print("opcodes: " + ", ".join(f"{o} {n}" for o, n in total.most_common(20)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
