"""pytest configuration for the Python API tests (tests/python).

CUDA tests: mark them ``@pytest.mark.requires_cuda`` (or use the
``cuda_device`` fixture). Without a CUDA device they are skipped with a reason
that starts with "no CUDA device"; with FLASH_KDA_REQUIRE_CUDA=1 a missing
device is an error of the whole run instead. The logic lives in
``flash_kda.testing`` so that tests/gpu/conftest.py can import the same hooks.
"""

from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("ml_dtypes", reason="bfloat16 NumPy arrays need ml_dtypes")

from flash_kda.testing import (  # noqa: E402,F401  (pytest hooks and fixture)
    NO_CUDA_DEVICE,
    cuda_device,
    make_problem,
    pytest_collection_modifyitems,
    pytest_configure,
    rel_l2,
)

@pytest.fixture
def problem_factory():
    """make_problem from flash_kda.testing (NumPy arrays, bf16 via ml_dtypes)."""
    return make_problem
