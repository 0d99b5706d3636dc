"""Print the SASS instructions with the most warp-stall samples from an ncu report.

Usage: python3 ncu_top_lines.py report.ncu-rep [N]
Runs `ncu --import ... --page source --csv --print-source sass` and sorts by
the "Warp Stall Sampling (All Samples)" column. (The CUDA view of this ncu
carries no metric columns, and it charges inlined helpers to their own lines:
bench/tools/ncu_attribute.py joins the SASS table with the kernel's inline
line info instead.)
"""
import csv
import io
import subprocess
import sys


def number(x):
    try:
        return float(x.replace(",", ""))
    except ValueError:
        return 0.0


def main():
    report = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    out = subprocess.run(["ncu", "--import", report, "--page", "source", "--csv", "--print-source", "sass"],
                         capture_output=True, text=True).stdout
    rows = list(csv.reader(io.StringIO(out)))
    hdr_i = next((i for i, r in enumerate(rows) if any("Warp Stall Sampling (All" in c for c in r)), None)
    if hdr_i is None:
        print("no stall column; first lines:\n" + "\n".join(out.splitlines()[:5]))
        return
    hdr = rows[hdr_i]
    col = next(i for i, c in enumerate(hdr) if "Warp Stall Sampling (All" in c)
    src = next((i for i, c in enumerate(hdr) if c == "Source"), 1)
    addr = next((i for i, c in enumerate(hdr) if c in ("Address", "# Address")), 0)
    body = [r for r in rows[hdr_i + 1:] if len(r) > col]
    total = sum(number(r[col]) for r in body) or 1.0
    print(f"== total stall samples {total:.0f}; top {top}")
    for r in sorted(body, key=lambda r: -number(r[col]))[:top]:
        print(f"{100 * number(r[col]) / total:5.1f}%  {r[addr][-6:]:>6}  {r[src].strip()[:110]}")


if __name__ == "__main__":
    main()
