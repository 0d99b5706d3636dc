"""The public surface of flash_kda: signature, call styles, help, metadata."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

import flash_kda

FLASHKDA_PARAMS = [
    ("q", inspect.Parameter.empty),
    ("k", inspect.Parameter.empty),
    ("v", inspect.Parameter.empty),
    ("g", inspect.Parameter.empty),
    ("beta", inspect.Parameter.empty),
    ("scale", inspect.Parameter.empty),
    ("out", inspect.Parameter.empty),
    ("A_log", inspect.Parameter.empty),
    ("dt_bias", inspect.Parameter.empty),
    ("lower_bound", inspect.Parameter.empty),
    ("initial_state", None),
    ("final_state", None),
    ("cu_seqlens", None),
]


# Serving additions: keyword-only, after FlashKDA's signature.
SERVING_PARAMS = [
    ("state_indices", None),
    ("final_state_indices", None),
    ("zero_start", None),
    ("checkpoints", None),
    ("checkpoint_offsets", None),
    ("checkpoint_interval", 0),
]


@pytest.mark.parametrize("fn", [flash_kda.fwd, flash_kda.reference_fwd, flash_kda.workspace_size])
def test_signature_is_flashkda(fn):
    """FlashKDA's parameters, in its order (FLA passes 7 positionally, the rest
    by keyword); our extensions come after them, keyword-only, optional."""
    params = list(inspect.signature(fn).parameters.values())
    positional = [p for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    keyword = [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert [(p.name, p.default) for p in positional] == FLASHKDA_PARAMS
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in positional)
    assert [(p.name, p.default) for p in keyword] == SERVING_PARAMS + [("gate", None)]


def test_metadata():
    assert isinstance(flash_kda.__version__, str) and flash_kda.__version__.count(".") >= 1
    info = flash_kda.build_info()
    assert info.startswith("flash-kda " + flash_kda.__version__)
    assert "CUDA architectures" in info
    assert flash_kda.HEAD_DIM == 128
    assert isinstance(flash_kda.cuda_available(), bool)
    assert isinstance(flash_kda.cuda_available(0), bool)
    for name in flash_kda.__all__:
        assert hasattr(flash_kda, name), name


def test_fwd_docstring_explains_every_argument():
    doc = flash_kda.fwd.__doc__
    for name, _ in FLASHKDA_PARAMS + SERVING_PARAMS:
        assert f"{name}:" in doc, name
    for word in ("[N, H, V, K]", "bf16", "fp32", "int64", "TypeError", "ValueError", "RuntimeError"):
        assert word in doc, word


def test_help_runs_in_a_fresh_interpreter():
    env = dict(os.environ, PAGER="cat", MANPAGER="cat", TERM="dumb")
    proc = subprocess.run(
        [sys.executable, "-c", "import flash_kda; help(flash_kda.fwd)"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "fwd(q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound" in proc.stdout
    assert "cu_seqlens" in proc.stdout


def test_fla_keyword_call_style(problem_factory):
    """flash-linear-attention calls fwd with these keywords; the result must
    match the all-positional call bit for bit."""
    p = problem_factory(seqlens=[9, 23], heads=2, state_dtype="fp32", seed=3)
    shape = p["q"].shape
    out_kw = np.full(shape, np.nan, dtype=p["q"].dtype)
    ht_kw = np.full_like(p["initial_state"], np.nan)
    flash_kda.fwd(
        p["q"], p["k"], p["v"], p["g"], p["beta"], p["scale"], out_kw,
        A_log=p["A_log"], dt_bias=p["dt_bias"], lower_bound=p["lower_bound"],
        initial_state=p["initial_state"], final_state=ht_kw, cu_seqlens=p["cu_seqlens"],
    )
    out_pos = np.full(shape, np.nan, dtype=p["q"].dtype)
    ht_pos = np.full_like(p["initial_state"], np.nan)
    flash_kda.fwd(
        p["q"], p["k"], p["v"], p["g"], p["beta"], p["scale"], out_pos, p["A_log"],
        p["dt_bias"], p["lower_bound"], p["initial_state"], ht_pos, p["cu_seqlens"],
    )
    assert np.isfinite(out_kw.astype(np.float32)).all()
    assert out_kw.tobytes() == out_pos.tobytes()
    assert ht_kw.tobytes() == ht_pos.tobytes()
    # Keywords for every argument, in a scrambled order, work too.
    out_all = np.full(shape, np.nan, dtype=p["q"].dtype)
    flash_kda.fwd(
        cu_seqlens=p["cu_seqlens"], lower_bound=p["lower_bound"], dt_bias=p["dt_bias"],
        A_log=p["A_log"], out=out_all, scale=p["scale"], beta=p["beta"], g=p["g"],
        v=p["v"], k=p["k"], q=p["q"], initial_state=p["initial_state"],
    )
    assert out_all.tobytes() == out_pos.tobytes()


def test_returns_none_and_accepts_int_scalars(problem_factory):
    p = problem_factory(batch=1, seq_len=8, heads=1, state_dtype=None)
    out = np.zeros(p["v"].shape, dtype=p["v"].dtype)
    r = flash_kda.fwd(p["q"], p["k"], p["v"], p["g"], p["beta"], 1, out,
                      p["A_log"], p["dt_bias"], -5)
    assert r is None
    assert np.abs(out.astype(np.float32)).sum() > 0


def test_workspace_size_is_zero_on_host(problem_factory):
    p = problem_factory(batch=2, seq_len=16, heads=2)
    out = np.zeros(p["v"].shape, dtype=p["v"].dtype)
    n = flash_kda.workspace_size(p["q"], p["k"], p["v"], p["g"], p["beta"], p["scale"], out,
                                 p["A_log"], p["dt_bias"], p["lower_bound"], p["initial_state"])
    assert n == 0 and isinstance(n, int)


def test_extension_rejects_unknown_bf16_name(problem_factory):
    p = problem_factory(batch=1, seq_len=4, heads=1, state_dtype=None)
    out = np.zeros(p["v"].shape, dtype=p["v"].dtype)
    u = lambda a: a.view(np.uint16)  # noqa: E731
    with pytest.raises(ValueError, match="bf16"):
        flash_kda._C.fwd(u(p["q"]), u(p["k"]), u(p["v"]), u(p["g"]), u(p["beta"]), 1.0, u(out),
                         p["A_log"], p["dt_bias"], -5.0, bf16=["q", "nope"])


def test_requires_cuda_skip_reason():
    from flash_kda.testing import NO_CUDA_DEVICE, cuda_device_count, no_cuda_reason

    reason = no_cuda_reason()
    if cuda_device_count() == 0:
        assert reason is not None and reason.startswith(NO_CUDA_DEVICE)
        assert "no CUDA device" in reason
    else:
        assert reason is None
