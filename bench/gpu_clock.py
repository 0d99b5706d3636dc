"""ClockSampler: the SM clock (MHz) and board power (W) from nvidia-smi,
sampled by a thread while a benchmark loop runs (an H200 under full load sits
at its 700 W limit, and then the clock, not the kernel, sets the time:
session 11's probe_full_machine.py)."""
from __future__ import annotations

import os
import statistics
import subprocess
import threading


def smi_query(fields: str) -> list[str] | None:
    """nvidia-smi's values of `fields` (comma-separated query names) for the
    benchmark's GPU (the first of CUDA_VISIBLE_DEVICES), without units; None
    when nvidia-smi is missing or answered nothing."""
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    try:
        r = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits", "-i", gpu],
                           capture_output=True, text=True, timeout=5)
    except Exception:  # noqa: BLE001
        return None
    values = [v.strip() for v in r.stdout.strip().split(",")]
    return values if r.returncode == 0 and any(values) else None


class ClockSampler:
    """`with ClockSampler() as clk: loop()`, then clk.median() -> (MHz, W),
    (None, None) when nvidia-smi is missing or gave nothing, or when
    constructed with enabled=False (no thread, no samples)."""

    def __init__(self, period_s: float = 0.1, enabled: bool = True):
        self.samples: list[tuple[float, float]] = []
        self._enabled = enabled
        self._period = period_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self):
        while not self._stop.is_set():
            try:
                mhz, watts = (float(x) for x in smi_query("clocks.sm,power.draw")[:2])
            except Exception:  # noqa: BLE001  no nvidia-smi (or no number): no clock column
                return
            self.samples.append((mhz, watts))
            self._stop.wait(self._period)

    def __enter__(self):
        if self._enabled:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def median(self) -> tuple[float | None, float | None]:
        if not self.samples:
            return None, None
        return statistics.median(s[0] for s in self.samples), statistics.median(s[1] for s in self.samples)
