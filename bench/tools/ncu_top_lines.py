"""Print the source lines with the most warp-stall samples from an ncu report.

Usage: python3 ncu_top_lines.py report.ncu-rep [N]
Runs `ncu --import ... --page source --csv --print-source cuda` and sorts by
the "Warp Stall Sampling (All Samples)" column; also prints the per-reason
columns for those lines when present.
"""
import csv
import io
import subprocess
import sys


def main():
    report = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    for view in ("cuda", "sass"):
        out = subprocess.run(["ncu", "--import", report, "--page", "source", "--csv",
                              "--print-source", view],
                             capture_output=True, text=True).stdout
        rows = list(csv.reader(io.StringIO(out)))
        hdr_i = next((i for i, r in enumerate(rows) if any("Warp Stall Sampling (All" in c for c in r)), None)
        if hdr_i is None:
            print(f"[{view}] no stall column; first lines:\n" + "\n".join(out.splitlines()[:5]))
            continue
        hdr = rows[hdr_i]
        col = next(i for i, c in enumerate(hdr) if "Warp Stall Sampling (All" in c)
        src = next((i for i, c in enumerate(hdr) if c == "Source"),
                   next((i for i, c in enumerate(hdr) if c in ("Address", "# Address")), 1))
        line_col = next((i for i, c in enumerate(hdr) if c in ("Line", "#")), 0)

        def num(x):
            try:
                return float(x.replace(",", ""))
            except ValueError:
                return 0.0

        body = [r for r in rows[hdr_i + 1:] if len(r) > col]
        total = sum(num(r[col]) for r in body) or 1.0
        print(f"== [{view}] total stall samples {total:.0f}; top {top}")
        for r in sorted(body, key=lambda r: -num(r[col]))[:top]:
            print(f"{100 * num(r[col]) / total:5.1f}%  {r[line_col][:6]:>6}  {r[src].strip()[:110]}")
        if view == "cuda":
            continue


if __name__ == "__main__":
    main()
