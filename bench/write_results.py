#!/usr/bin/env python3
"""Writes results.md for one GPU-machine run of bench/run_device.sh.

    python3 bench/write_results.py --out OUT --steps steps.tsv [--repo .] [--elapsed S]

Reads what the run left in OUT (pytest.log, accuracy.json, sanitizer.log,
cpp.log, bench.json, build.log) and the step table (name, PASS/FAIL/SKIP,
seconds, note; tab-separated), adds the machine's facts (GPU, driver, CUDA,
torch, git commit, a hash of the kernel sources) and the overall status.
Exit status: 0 when no step failed, 1 otherwise.

The source hash is the one printed by
    find src include -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def sh(cmd, cwd=None) -> str:
    try:
        r = subprocess.run(cmd, shell=True, cwd=cwd, capture_output=True, text=True, timeout=60)
        return r.stdout.strip()
    except Exception as e:
        return f"({type(e).__name__}: {e})"


def source_hash(repo: str) -> str:
    """sha256 of `sha256sum` lines over every file under src/ and include/,
    sorted bytewise by path; first 16 hex digits."""
    paths = []
    for top in ("src", "include"):
        for root, _dirs, files in os.walk(os.path.join(repo, top)):
            for f in files:
                paths.append(os.path.relpath(os.path.join(root, f), repo))
    paths.sort(key=lambda p: p.encode())
    lines = []
    for p in paths:
        with open(os.path.join(repo, p), "rb") as f:
            lines.append(f"{hashlib.sha256(f.read()).hexdigest()}  {p}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()[:16] + f" ({len(paths)} files)"


def machine_facts(repo: str) -> list:
    facts = []
    smi = sh("nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader")
    facts.append(("GPU (nvidia-smi)", smi or "n/a"))
    # Which unit and how it is set: the same build's time moved 3.5-4% between
    # machine starts in session 16 (FLA's did not), so runs name their GPU.
    unit = sh("nvidia-smi --query-gpu=serial,uuid,power.limit,clocks.max.sm,temperature.gpu "
              "--format=csv,noheader")
    facts.append(("GPU serial, uuid, power limit, max SM clock, temperature", unit or "n/a"))
    nvcc = sh("nvcc --version | tail -n 2 | head -n 1")
    facts.append(("nvcc", nvcc or "n/a"))
    py = sh(f"{sys.executable} -c \"import torch, sys; print(torch.__version__, 'CUDA', torch.version.cuda, "
            f"'|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU', '| python', "
            f"sys.version.split()[0])\"")
    facts.append(("torch", py or "n/a"))
    tri = sh(f"{sys.executable} -c \"import triton; print(triton.__version__)\"")
    facts.append(("triton", tri or "n/a"))
    fk = sh(f"cd /tmp && {sys.executable} -c \"import flash_kda; print(flash_kda.build_info())\"")
    facts.append(("flash_kda build", fk or "n/a"))
    head = sh("git rev-parse HEAD", cwd=repo)
    dirty = sh("git status --porcelain --untracked-files=all | wc -l", cwd=repo)
    facts.append(("git commit", f"{head or 'n/a'} (+ {dirty or '?'} modified/untracked files)"))
    facts.append(("kernel sources hash (src/, include/)", source_hash(repo)))
    return facts


def read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def read_steps(path: str) -> list:
    steps = []
    for line in read(path).splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            steps.append((parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else ""))
    return steps


def pytest_section(log: str) -> list:
    if not log:
        return ["(no pytest.log)"]
    out = []
    summary = [l for l in log.splitlines() if re.search(r"\d+ (passed|failed|errors?|skipped|deselected)", l)]
    out.append(f"summary: `{summary[-1].strip('= ').strip()}`" if summary else "summary: (none: killed or crashed?)")
    fails = [l for l in log.splitlines() if l.startswith(("FAILED ", "ERROR "))]
    if fails:
        out.append("")
        out.append(f"failures ({len(fails)}):")
        out.append("```")
        out.extend(l[:300] for l in fails[:40])
        if len(fails) > 40:
            out.append(f"... {len(fails) - 40} more")
        out.append("```")
    skips = [l for l in log.splitlines() if l.startswith("SKIPPED ")]
    if skips:
        out.append("")
        out.append("skips:")
        out.append("```")
        out.extend(l[:300] for l in skips[:15])
        if len(skips) > 15:
            out.append(f"... {len(skips) - 15} more")
        out.append("```")
    return out


def accuracy_section(path: str) -> list:
    try:
        with open(path) as f:
            acc = json.load(f)
    except Exception:
        return ["(no accuracy.json: the accuracy tests did not run)"]
    out = ["| | output rel L2 | final state rel L2 |", "|---|---:|---:|"]
    std = acc.get("standard")
    if std:
        out.append(f"| **ours**, standard case (seed 0) | {std['out_rel_l2']:.2e} | {std['final_state_rel_l2']:.2e} |")
        w = std.get("worst_over_seeds", {})
        if w:
            out.append(f"| ours, worst of 3 seeds | {w['out_rel_l2']:.2e} | {w['final_state_rel_l2']:.2e} |")
        out.append("| FLA (anchors) | 4.1e-03 | 2.8e-03 |")
        out.append("| FlashKDA (anchors) | 5.7e-03 | 5.2e-03 |")
    for key in sorted(k for k in acc if k.startswith("fla_crosscheck")):
        r = acc[key]
        name = r.get("case", key)
        out.append(f"| ours vs oracle, {name} | {r['ours_vs_ref']['out']:.2e} | {r['ours_vs_ref']['final_state']:.2e} |")
        out.append(f"| FLA vs oracle, {name} (same run) | {r['fla_vs_ref']['out']:.2e} | {r['fla_vs_ref']['final_state']:.2e} |")
        out.append(f"| ours vs FLA, {name} | {r['ours_vs_fla']['out']:.2e} | {r['ours_vs_fla']['final_state']:.2e} |")
    if std:
        out.append("")
        out.append(f"standard case: {std.get('case', '')}")
    return out


def sanitizer_section(log: str, steps: list) -> list:
    out = []
    for name, status, secs, note in steps:
        if name.startswith("sanitizer"):
            out.append(f"- {name.replace('sanitizer_', '')}: **{status}** ({secs} s) {note}")
    lines = [l for l in log.splitlines() if "ERROR SUMMARY" in l or "RACECHECK SUMMARY" in l
             or l.startswith("sanitize_case:") or l.startswith("=== ")]
    if lines:
        out.append("")
        out.append("```")
        out.extend(l[:300] for l in lines[:30])
        out.append("```")
    return out or ["(not run)"]


def bench_section(path: str) -> list:
    data = _load(path)
    if not data:
        return ["(no bench.json)"]
    sys.path.insert(0, HERE)
    try:
        from bench_fwd import format_table
    except Exception as e:  # pragma: no cover
        return [f"(cannot format bench.json: {e})"]
    out = ["```", format_table(data), "```"]
    s = data.get("settings", {})
    if s:
        out.append("")
        out.append(f"timing: {s.get('statistic', '')}, up to {s.get('repeats')} calls "
                   f"(>= {s.get('min_repeats')} if a measurement would pass {s.get('max_seconds')} s), "
                   f"warm-up {s.get('warmup')}; {s.get('states', '')}; lower_bound {s.get('lower_bound')}; "
                   f"bench wall time {data.get('wall_s', '?')} s")
    return out


def decode_bench_section(path: str) -> list:
    """The decode benchmark (bench/bench_decode.py --json OUT/decode_bench.json)."""
    data = _load(path)
    if not data:
        return ["(no decode_bench.json)"]
    sys.path.insert(0, HERE)
    try:
        from bench_decode import format_table as format_decode_table
    except Exception as e:  # pragma: no cover
        return [f"(cannot format decode_bench.json: {e})"]
    return ["```", format_decode_table(data), "```", "",
            f"decode bench wall time {data.get('wall_s', '?')} s"]


def _load(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except Exception:
        return None


def pool_bench_section(path: str) -> list:
    """bench/bench_state_pool.py: plain vs slot-indexed vs gather/scatter vs checkpoints."""
    data = _load(path)
    if not data:
        return ["(no pool_bench.json)"]
    out = ["| case | plain ms | slots ms | gather->fwd->scatter ms | slots + fp32 ckpt/64 ms | "
           "slots + bf16 ckpt/64 ms | ckpt kernel, none due ms | slots/plain | slots/plain alternating | gather/plain | "
           "fp32 ckpt/slots | bf16 ckpt/slots | none due/slots |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data.get("cases", []):
        ms = r["ms"]
        none_ms = ms.get("slots+ckpt0")
        none_ratio = r.get("ckpt0_over_slots")
        alt = r.get("slots_over_plain_alternating")
        out.append(f"| {r['case']} | {ms['plain']:.3f} | {ms['slots']:.3f} | {ms['gather']:.3f} | "
                   f"{ms['slots+ckpt']:.3f} | {ms['slots+ckpt16']:.3f} | "
                   f"{'n/a' if none_ms is None else f'{none_ms:.3f}'} | {r['slots_over_plain']:.3f} | "
                   f"{'n/a' if alt is None else f'{alt:.3f}'} | "
                   f"{r['gather_over_plain']:.3f} | {r['ckpt_over_slots']:.3f} | {r['ckpt16_over_slots']:.3f} | "
                   f"{'n/a' if none_ratio is None else f'{none_ratio:.3f}'} |")
    out += ["", "targets (issue #7): slots/plain <= 1.03, ckpt64/slots <= 1.10"]
    return out


def host_overhead_section(path: str) -> list:
    """bench/bench_host_overhead.py: host cost of one eager call (issue #5: <= 20 us)."""
    data = _load(path)
    if not data:
        return ["(no host_overhead.json)"]
    out = [f"problem {data.get('problem', '?')}; torch {data.get('torch', '?')}", "",
           "| call | enqueue us/call | kernel us | wall us/call | wall - kernel us |", "|---|---:|---:|---:|---:|"]
    for name, m in data.get("cases", {}).items():
        out.append(f"| {name} | {m['enqueue_us']:.1f} | {m['kernel_us']:.1f} | {m['wall_us']:.1f} | "
                   f"{m['wall_minus_kernel_us']:.1f} |")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--steps", required=True)
    p.add_argument("--repo", default=".")
    p.add_argument("--elapsed", default="?")
    p.add_argument("--md", default=None, help="output path (default OUT/results.md)")
    args = p.parse_args(argv)
    out_dir = args.out
    steps = read_steps(args.steps)
    failed = [s for s in steps if s[1] == "FAIL"]
    overall = "FAIL" if failed else "PASS"

    md = ["# flash-kda GPU run", ""]
    md.append(f"**Overall: {overall}**" + (f" (failed: {', '.join(s[0] for s in failed)})" if failed else "")
              + f" — {args.elapsed} s in all")
    md.append("")
    md.append("## Machine and code")
    md.append("")
    for k, v in machine_facts(args.repo):
        md.append(f"- {k}: {v}")
    md.append("")
    md.append("## Steps")
    md.append("")
    md.append("| step | status | s | note |")
    md.append("|---|---|---:|---|")
    for name, status, secs, note in steps:
        md.append(f"| {name} | {status} | {secs} | {note.replace('|', '/')[:200]} |")
    md.append("")
    md.append("## Tests")
    md.append("")
    md.extend(pytest_section(read(os.path.join(out_dir, "pytest.log"))))
    cpp = read(os.path.join(out_dir, "cpp.log"))
    cpp_lines = [l for l in cpp.splitlines() if "tests passed" in l or "skipped" in l.lower() or "FAILED" in l
                 or "No tests were found" in l]
    md.append("")
    md.append("C++ (ctest): " + ("; ".join(l.strip() for l in cpp_lines[-5:]) if cpp_lines else "(not run)"))
    md.append("")
    md.append("## Accuracy (relative L2 against the float64 recurrence)")
    md.append("")
    md.extend(accuracy_section(os.path.join(out_dir, "accuracy.json")))
    md.append("")
    md.append("## compute-sanitizer")
    md.append("")
    md.extend(sanitizer_section(read(os.path.join(out_dir, "sanitizer.log")), steps))
    md.append("")
    md.append("## Benchmark")
    md.append("")
    md.extend(bench_section(os.path.join(out_dir, "bench.json")))
    md.append("")
    md.append("## Benchmark, softplus gate (issue #8; FLA with the same gate; aim: 2x FLA)")
    md.append("")
    if os.path.exists(os.path.join(out_dir, "bench_softplus.json")):
        md.extend(bench_section(os.path.join(out_dir, "bench_softplus.json")))
    else:
        md.append("(no bench_softplus.json)")
    md.append("")
    md.append("## State-pool benchmark (issue #7)")
    md.append("")
    md.extend(pool_bench_section(os.path.join(out_dir, "pool_bench.json")))
    md.append("")
    md.append("## Host overhead (issue #5)")
    md.append("")
    md.extend(host_overhead_section(os.path.join(out_dir, "host_overhead.json")))
    md.append("")
    md.append("## Decode benchmark")
    md.append("")
    md.extend(decode_bench_section(os.path.join(out_dir, "decode_bench.json")))
    md.append("")
    text = "\n".join(md)
    path = args.md or os.path.join(out_dir, "results.md")
    with open(path, "w") as f:
        f.write(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
