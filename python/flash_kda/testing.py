"""Test helpers shared by the project's pytest suites (tests/python, tests/gpu).

The ``requires_cuda`` marker: a test marked ``@pytest.mark.requires_cuda``
(or using the ``cuda_device`` fixture) is skipped with the reason
``"no CUDA device ..."`` on a machine without a usable CUDA device, and runs
(and fails loudly if flash_kda lacks kernels for it) wherever there is one.
Set ``FLASH_KDA_REQUIRE_CUDA=1`` to make a missing device an error of the
whole run instead of a skip (GPU CI: a skipped GPU suite is not a pass).

Use from a conftest.py::

    from flash_kda.testing import (  # noqa: F401  (pytest hooks and fixture)
        cuda_device,
        pytest_collection_modifyitems,
        pytest_configure,
    )

Importing this module does not require pytest (the fixture is then None).
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from typing import Any, Sequence

import numpy as np

__all__ = [
    "make_problem",
    "rel_l2",
    "rel_l2_beyond_rounding",
    "cuda_device_count",
    "no_cuda_reason",
    "NO_CUDA_DEVICE",
    "pytest_configure",
    "pytest_collection_modifyitems",
    "cuda_device",
]

#: Start of every skip reason given for a missing CUDA device.
NO_CUDA_DEVICE = "no CUDA device"


def make_problem(
    *,
    batch: int = 1,
    seq_len: int = 64,
    heads: int = 2,
    seqlens: Sequence[int] | None = None,
    state_dtype: str | None = "fp32",
    seed: int = 0,
    lower_bound: float = -5.0,
) -> dict[str, Any]:
    """A random KDA problem as NumPy arrays (bf16 as ``ml_dtypes.bfloat16``).

    ``seqlens`` packs variable-length sequences into one row (then ``batch``
    is ignored and ``cu_seqlens`` is set). ``state_dtype`` is "fp32", "bf16"
    or None (no initial state). Returns a dict with the input arguments of
    ``flash_kda.fwd`` (``q k v g beta scale A_log dt_bias lower_bound
    initial_state cu_seqlens``) and the sizes ``B T H N K V``. Outputs are
    not allocated.
    """
    import ml_dtypes

    bf16 = ml_dtypes.bfloat16
    rng = np.random.default_rng(seed)
    K = V = 128
    H = heads
    if seqlens is not None:
        B, T = 1, int(sum(seqlens))
        cu = np.zeros(len(seqlens) + 1, dtype=np.int64)
        cu[1:] = np.cumsum(seqlens)
        N = len(seqlens)
    else:
        B, T, cu, N = batch, seq_len, None, batch

    def randn(*shape: int, scale: float = 1.0) -> np.ndarray:
        return (scale * rng.standard_normal(shape, dtype=np.float32)).astype(bf16)

    p: dict[str, Any] = dict(
        q=randn(B, T, H, K),
        k=randn(B, T, H, K),
        v=randn(B, T, H, V),
        g=randn(B, T, H, K),
        beta=randn(B, T, H),
        scale=K**-0.5,
        # Mamba-style decay rates: A = exp(A_log) in [1, 16].
        A_log=np.log(rng.uniform(1.0, 16.0, H)).astype(np.float32),
        dt_bias=(0.5 * rng.standard_normal((H, K))).astype(np.float32),
        lower_bound=float(lower_bound),
        initial_state=None,
        cu_seqlens=cu,
        B=B, T=T, H=H, N=N, K=K, V=V,
    )
    if state_dtype is not None:
        h0 = 0.1 * rng.standard_normal((N, H, V, K), dtype=np.float32)
        if state_dtype in ("fp32", "float32"):
            p["initial_state"] = h0
        elif state_dtype in ("bf16", "bfloat16"):
            p["initial_state"] = h0.astype(bf16)
        else:
            raise ValueError(f"state_dtype: expected 'fp32', 'bf16' or None, got {state_dtype!r}")
    return p


def rel_l2(actual: Any, expected: Any) -> float:
    """||actual - expected|| / ||expected|| in float64 (NumPy arrays, any dtype)."""
    a = np.asarray(actual).astype(np.float64)
    e = np.asarray(expected).astype(np.float64)
    denom = float(np.linalg.norm(e))
    diff = float(np.linalg.norm(a - e))
    if denom == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / denom


def rel_l2_beyond_rounding(actual: np.ndarray, expected: Any) -> float:
    """The relative L2 error of ``actual`` beyond rounding ``expected`` to
    ``actual``'s dtype: ``sqrt(max(0, |a - e|^2 - |round(e) - e|^2)) / |e|``.

    ``expected`` is the float64 oracle. A correctly rounded result scores 0;
    a result that rounds the other way where ``expected`` is within fp32
    noise of a rounding midpoint scores ~0 too (unlike ``rel_l2(a,
    round(e))``, which counts a whole ulp for each such tie); any genuine
    error counts in full.
    """
    a = np.asarray(actual)
    e = np.asarray(expected).astype(np.float64)
    r = e.astype(a.dtype).astype(np.float64)
    a = a.astype(np.float64)
    excess = float(np.sum((a - e) ** 2) - np.sum((r - e) ** 2))
    denom = float(np.linalg.norm(e))
    if not np.isfinite(excess):
        return float("inf")
    if denom == 0.0:
        return 0.0 if excess <= 0.0 else float("inf")
    return float(np.sqrt(max(excess, 0.0))) / denom


@functools.lru_cache(maxsize=None)
def cuda_device_count() -> int:
    """Number of CUDA devices the driver reports (0 without driver or device).

    Asks PyTorch when it is already imported, else the driver API (libcuda)
    directly, so it needs no framework.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            return int(torch.cuda.device_count())
        except Exception:  # pragma: no cover - broken torch install
            pass
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            if lib.cuInit(0) != 0:
                return 0
            count = ctypes.c_int(0)
            if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return 0
            return int(count.value)
        except AttributeError:  # pragma: no cover - not a CUDA driver
            return 0
    return 0


def no_cuda_reason() -> str | None:
    """The skip reason for CUDA tests, or None when a CUDA device is present."""
    if cuda_device_count() > 0:
        return None
    return NO_CUDA_DEVICE + " (the CUDA driver reports none on this machine)"


def _require_cuda() -> bool:
    return os.environ.get("FLASH_KDA_REQUIRE_CUDA", "").lower() in ("1", "true", "yes", "on")


def pytest_configure(config) -> None:  # pragma: no cover - pytest hook
    config.addinivalue_line(
        "markers",
        "requires_cuda: needs a CUDA device; skipped with reason 'no CUDA device' without one",
    )


def pytest_collection_modifyitems(config, items) -> None:  # pragma: no cover - pytest hook
    import pytest

    reason = None
    for item in items:
        if item.get_closest_marker("requires_cuda") is None:
            continue
        if reason is None:
            reason = no_cuda_reason() or ""
        if not reason:
            return
        if _require_cuda():
            raise pytest.UsageError(f"FLASH_KDA_REQUIRE_CUDA is set but {reason}")
        item.add_marker(pytest.mark.skip(reason=reason))


def _cuda_device_fixture():  # pragma: no cover - pytest fixture
    """Fixture: the CUDA device id to test on (0); skips without a device."""
    import pytest

    reason = no_cuda_reason()
    if reason is not None:
        if _require_cuda():
            pytest.fail(f"FLASH_KDA_REQUIRE_CUDA is set but {reason}")
        pytest.skip(reason)
    return 0


try:  # Define the fixture only where pytest is installed.
    import pytest as _pytest

    cuda_device = _pytest.fixture(name="cuda_device")(_cuda_device_fixture)
except ImportError:  # pragma: no cover
    cuda_device = None  # type: ignore[assignment]
