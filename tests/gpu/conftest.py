"""GPU suite gate: every test here needs torch, a CUDA device and a flash_kda
build with kernels for it. Without them each test is skipped with a reason
that starts "no CUDA device"; with FLASH_KDA_REQUIRE_CUDA=1 (bench/run_device.sh
sets it) they fail instead, so a broken build on the GPU machine is not
mistaken for a pass.

FLASH_KDA_TEST_DEVICE=cpu runs the same cases through the CPU backend (the
CUDA-only tests skip): a check of the suite itself on a machine without a GPU.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kda_cases  # noqa: E402


@pytest.fixture(autouse=True)
def _require_cuda(request):
    ok, reason = kda_cases.cuda_status()
    if not ok:
        if os.environ.get("FLASH_KDA_REQUIRE_CUDA") == "1":
            pytest.fail(f"{reason} (FLASH_KDA_REQUIRE_CUDA=1)", pytrace=False)
        pytest.skip(reason)
    # @pytest.mark.cuda_only: CUDA-specific behaviour (graphs, device-side
    # checks, kernel variants), skipped in the FLASH_KDA_TEST_DEVICE=cpu self-check.
    if request.node.get_closest_marker("cuda_only") and not kda_cases.on_cuda():
        pytest.skip("CUDA only (FLASH_KDA_TEST_DEVICE=cpu)")
    yield


def pytest_sessionfinish(session, exitstatus):
    """The worst errors of the accuracy checks that ran (with FLASH_KDA_RESULTS_DIR)."""
    worst = kda_cases.WORST_SEEN
    if worst["out"][0] > 0.0:
        kda_cases.record_result("worst_checked", {
            "out_rel_l2": worst["out"][0], "out_case": worst["out"][1],
            "state_rel_l2": worst["state"][0], "state_case": worst["state"][1]})
