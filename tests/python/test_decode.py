"""flash_kda.decode on the host: refused calls (exception type, the argument's
name first in the message and in `argument`, nothing written) and the host
path (float64, stored in the caller's dtypes) against reference_decode."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

import flash_kda

BF16 = np.dtype(ml_dtypes.bfloat16)
D = flash_kda.HEAD_DIM


def make(N=3, t=2, H=2, P=6, *, lengths=None, state=np.float32, idx=np.int64, cu=np.int64,
         slots=None, seed=0):
    rng = np.random.default_rng(seed)
    lead = (N, t) if lengths is None else (1, sum(lengths))
    if lengths is not None:
        N = len(lengths)
    a = dict(
        q=rng.standard_normal((*lead, H, D)).astype(BF16),
        k=rng.standard_normal((*lead, H, D)).astype(BF16),
        v=rng.standard_normal((*lead, H, D)).astype(BF16),
        g=(rng.uniform(-8, 8, (*lead, H, D))).astype(BF16),
        beta=rng.standard_normal((*lead, H)).astype(BF16),
        scale=D ** -0.5,
        out=np.full((*lead, H, D), np.nan, dtype=BF16),
        A_log=rng.uniform(-1, 1, H).astype(np.float32),
        dt_bias=rng.uniform(-4, 4, (H, D)).astype(np.float32),
        lower_bound=-5.0,
        state=rng.standard_normal((P, H, D, D)).astype(state),
        state_indices=np.array(slots if slots is not None else rng.permutation(P)[:N], dtype=idx),
        cu_seqlens=None if lengths is None else np.concatenate([[0], np.cumsum(lengths)]).astype(cu),
    )
    return a


def refuse(exc_type, argument, fn=flash_kda.decode, **overrides):
    a = dict(make(), **overrides)
    before = [a["out"].tobytes(), a["state"].tobytes()]
    with pytest.raises(exc_type) as info:
        fn(**a)
    msg = str(info.value)
    assert msg.startswith(argument + ":"), msg
    assert getattr(info.value, "argument", None) == argument
    assert [a["out"].tobytes(), a["state"].tobytes()] == before, "a refused call wrote"
    return msg


FNS = [flash_kda.decode, flash_kda.reference_decode, flash_kda.decode_workspace_size]


@pytest.mark.parametrize("fn", FNS)
def test_wrong_dtypes_are_type_errors(fn):
    base = make()
    assert "bfloat16" in refuse(TypeError, "q", fn, q=base["q"].astype(np.float32))
    assert "int32 or int64" in refuse(TypeError, "state_indices", fn,
                                      state_indices=base["state_indices"].astype(np.float32))
    assert "float16" in refuse(TypeError, "state", fn, state=base["state"].astype(np.float16))
    assert "float32" in refuse(TypeError, "A_log", fn, A_log=base["A_log"].astype(np.float64))


def test_fp64_state_and_fp32_out_only_for_the_oracle():
    base = make()
    refuse(TypeError, "state", state=base["state"].astype(np.float64))
    refuse(TypeError, "out", out=base["out"].astype(np.float32))
    a = make()
    a["state"] = a["state"].astype(np.float64)
    a["out"] = np.full(a["out"].shape, np.nan)
    flash_kda.reference_decode(**a)
    assert np.isfinite(a["out"]).all()


@pytest.mark.parametrize("fn", FNS)
def test_shapes_and_token_counts(fn):
    assert "[P, H, V, K]" in refuse(ValueError, "state", fn, state=np.zeros((6, 3, D, D), np.float32))
    assert "[N]" in refuse(ValueError, "state_indices", fn, state_indices=np.arange(2))
    big = make(N=3, t=9)
    msg = refuse(ValueError, "q", fn, **{k: big[k] for k in ("q", "k", "v", "g", "beta", "out")})
    assert "1..8" in msg and "t = 9" in msg
    assert "K = 64" in refuse(ValueError, "q", fn, q=np.zeros((3, 2, 2, 64), BF16))


@pytest.mark.parametrize("fn", FNS)
def test_index_contents_on_host(fn):
    assert "[0, 6)" in refuse(ValueError, "state_indices", fn, state_indices=np.array([0, 6, 1]))
    assert "distinct" in refuse(ValueError, "state_indices", fn, state_indices=np.array([2, -1, 2]))
    packed = make(lengths=[2, 3, 1])
    bad = packed["cu_seqlens"].copy()
    bad[1] = 0
    a = dict(packed)
    a["cu_seqlens"] = bad
    with pytest.raises(ValueError, match="^cu_seqlens: expected 1..8 tokens per sequence"):
        fn(**a)
    assert np.isnan(packed["out"].astype(np.float32)).all()


def test_scalars_layout_and_writability():
    refuse(ValueError, "lower_bound", lower_bound=-5.5)
    refuse(ValueError, "scale", scale=math.inf)
    refuse(TypeError, "scale", scale="x")
    base = make()
    refuse(ValueError, "state", state=np.asfortranarray(base["state"]))
    ro = base["state"].copy()
    ro.flags.writeable = False
    assert "read-only" in refuse(ValueError, "state", state=ro)
    assert "DLPack" in refuse(TypeError, "state_indices", state_indices=[0, 1, 2])


def test_workspace_size_on_host_is_zero():
    assert flash_kda.decode_workspace_size(**make()) == 0


@pytest.mark.parametrize("state", [np.float32, BF16])
@pytest.mark.parametrize("idx", [np.int32, np.int64])
@pytest.mark.parametrize("packed", [False, True])
def test_host_decode_is_the_oracle_rounded_once(state, idx, packed):
    a = make(N=4, t=3, P=9, lengths=[1, 8, 3, 2] if packed else None, state=state, idx=idx,
             slots=[5, -1, 0, 8], seed=3)
    ref = dict(a, out=np.full(a["out"].shape, np.nan), state=a["state"].astype(np.float64))
    flash_kda.reference_decode(**ref)
    before = a["state"].copy()
    flash_kda.decode(**a)
    # bf16 out equals the float64 value rounded (through float32: within one bf16 ulp).
    got = a["out"].astype(np.float64)
    assert np.all(np.abs(got - ref["out"]) <= np.abs(ref["out"]) * 2.0 ** -8 + 1e-30)
    # Padding row: zeros. Slots named: updated; others: bit-identical.
    rows = slice(1, 9) if packed else (1,)
    np.testing.assert_array_equal((a["out"][0, rows] if packed else a["out"][1]).astype(np.float32), 0.0)
    for s in range(9):
        same = a["state"][s].tobytes() == before[s].tobytes()
        assert same == (s not in (5, 0, 8)), f"slot {s}"
    np.testing.assert_allclose(a["state"][[5, 0, 8]].astype(np.float64), ref["state"][[5, 0, 8]],
                               rtol=2.0 ** -7, atol=1e-6)


def test_torch_cpu_tensors():
    torch = pytest.importorskip("torch")
    a = make(seed=5)
    t = {k: (torch.from_numpy(v.astype(np.float32)).bfloat16() if isinstance(v, np.ndarray) and v.dtype == BF16
             else torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v) for k, v in a.items()}
    flash_kda.decode(**t)
    flash_kda.decode(**a)
    np.testing.assert_array_equal(t["out"].float().numpy(), a["out"].astype(np.float32))
    np.testing.assert_array_equal(t["state"].numpy(), a["state"])
