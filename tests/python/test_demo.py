"""The demo CLI: python -m flash_kda.demo (CPU sizes only here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flash_kda.testing import cuda_device_count


def run_demo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flash_kda.demo", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("extra", [
    ["--heads", "2", "--seq-len", "200"],
    ["--varlen", "100,37,0,150", "--state-dtype", "bf16", "--heads", "3"],
    ["--batch", "2", "--seq-len", "64", "--state-dtype", "none", "--check-heads", "1"],
])
def test_demo_cpu_passes(extra):
    proc = run_demo("--device", "cpu", "--repeats", "2", *extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for word in ("[1/4]", "[4/4]", "time", "tokens/s", "GB/s", "rel L2 error", "result     : PASS"):
        assert word in out, (word, out)
    if "--state-dtype" in extra and "none" in extra:
        assert "final_state" not in out
    else:
        assert "final_state: rel L2 error" in out


def test_demo_rejects_bad_options():
    proc = run_demo("--varlen", "10,x")
    assert proc.returncode == 2 and "--varlen" in proc.stderr
    proc = run_demo("--heads", "0")
    assert proc.returncode == 2


@pytest.mark.skipif(cuda_device_count() > 0, reason="a CUDA device is present")
def test_demo_cuda_without_device_says_why():
    proc = run_demo("--device", "cuda")
    assert proc.returncode == 2
    assert "--device cuda" in proc.stdout
