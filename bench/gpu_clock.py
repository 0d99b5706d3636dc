"""ClockSampler: the SM clock (MHz) and board power (W) from nvidia-smi,
sampled by a thread while a benchmark loop runs (an H200 under full load sits
at its 700 W limit, and then the clock, not the kernel, sets the time:
session 11's probe_full_machine.py)."""
from __future__ import annotations

import os
import statistics
import subprocess
import threading


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
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
        while not self._stop.is_set():
            try:
                r = subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm,power.draw",
                                    "--format=csv,noheader,nounits", "-i", gpu],
                                   capture_output=True, text=True, timeout=5)
                mhz, watts = (float(x) for x in r.stdout.strip().split(",")[:2])
                self.samples.append((mhz, watts))
            except Exception:  # noqa: BLE001  no nvidia-smi (or no number): no clock column
                return
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
