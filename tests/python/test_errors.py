"""Refused calls: the right exception type, the argument's name in the
message (and in `argument`), and nothing written."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import flash_kda

BF16 = np.dtype(ml_dtypes.bfloat16)


@pytest.fixture
def call(problem_factory):
    """Returns (args dict, run) where run(**overrides) calls fwd with the
    overrides and checks that out and final_state were left untouched."""
    p = problem_factory(seqlens=[6, 10], heads=2, state_dtype="fp32", seed=7)
    out = np.full(p["v"].shape, np.nan, dtype=BF16)
    ht = np.full(p["initial_state"].shape, np.nan, dtype=np.float32)
    args = dict(q=p["q"], k=p["k"], v=p["v"], g=p["g"], beta=p["beta"], scale=p["scale"],
                out=out, A_log=p["A_log"], dt_bias=p["dt_bias"], lower_bound=-5.0,
                initial_state=p["initial_state"], final_state=ht, cu_seqlens=p["cu_seqlens"])

    def run(exc_type, argument, fn=flash_kda.fwd, **overrides):
        kwargs = dict(args, **overrides)
        watched = [a for a in (kwargs["out"], kwargs["final_state"]) if isinstance(a, np.ndarray)]
        before = [a.tobytes() for a in watched]
        with pytest.raises(exc_type) as info:
            fn(**kwargs)
        msg = str(info.value)
        assert msg.startswith(argument + ":"), msg
        assert getattr(info.value, "argument", argument) == argument
        for a, b in zip(watched, before):
            assert a.tobytes() == b, "a refused call wrote an output"
        return msg

    run.args = args
    return run


def test_the_valid_call_works(call):
    flash_kda.fwd(**call.args)
    assert np.isfinite(call.args["out"].astype(np.float32)).all()


@pytest.mark.parametrize("fn", [flash_kda.fwd, flash_kda.workspace_size, flash_kda.reference_fwd])
def test_wrong_dtype_is_type_error(call, fn):
    msg = call(TypeError, "q", fn=fn, q=call.args["q"].astype(np.float32))
    assert "bfloat16" in msg and "float32" in msg


def test_fp16_is_type_error(call):
    call(TypeError, "k", k=call.args["k"].astype(np.float16))


def test_A_log_dtype(call):
    call(TypeError, "A_log", A_log=call.args["A_log"].astype(np.float64))


def test_cu_seqlens_float_is_type_error(call):
    call(TypeError, "cu_seqlens", cu_seqlens=call.args["cu_seqlens"].astype(np.float32))


def test_serving_arguments_are_checked(call):
    pool = np.zeros((4,) + call.args["initial_state"].shape[1:], dtype=np.float32)
    pool_args = dict(initial_state=pool, final_state=pool)
    msg = call(ValueError, "state_indices", state_indices=np.array([1, 1]), **pool_args)
    assert "distinct" in msg
    msg = call(ValueError, "state_indices", state_indices=np.array([0, 4], dtype=np.int32), **pool_args)
    assert "[0, 4)" in msg
    call(TypeError, "state_indices", state_indices=np.array([0.0, 1.0]), **pool_args)
    call(TypeError, "zero_start", state_indices=np.array([0, 1]), zero_start=np.array([0, 1], np.int32),
         **pool_args)
    call(ValueError, "final_state_indices", final_state_indices=np.array([0, 1]))
    ckpt = np.zeros((1,) + call.args["initial_state"].shape[1:], dtype=np.float32)
    call(ValueError, "checkpoint_interval", checkpoints=ckpt, checkpoint_offsets=np.array([0, 0, 0]),
         checkpoint_interval=8)
    call(TypeError, "checkpoint_interval", checkpoints=ckpt, checkpoint_offsets=np.array([0, 0, 0]),
         checkpoint_interval=16.0)
    msg = call(ValueError, "checkpoint_offsets", checkpoints=ckpt, checkpoint_offsets=np.array([0, 1, 1]),
               checkpoint_interval=16)  # sequences of 6 and 10 tokens: no checkpoint
    assert "sequence 0 has 6 tokens" in msg


def test_state_dtype_mismatch(call):
    call(TypeError, "final_state",
         final_state=np.zeros(call.args["initial_state"].shape, dtype=BF16))


def test_not_a_tensor_is_type_error(call):
    msg = call(TypeError, "v", v=[[1.0, 2.0]])
    assert "list" in msg


def test_missing_required_tensor(call):
    call(ValueError, "dt_bias", dt_bias=None)


def test_scalar_not_a_number(call):
    call(TypeError, "scale", scale="0.1")


def test_wrong_shape_is_value_error(call):
    msg = call(ValueError, "k", k=np.ascontiguousarray(call.args["k"][:, :-1]))
    assert "shape" in msg


def test_wrong_rank(call):
    call(ValueError, "beta", beta=call.args["beta"][..., None].copy())


def test_rank_above_four(call):
    call(ValueError, "q", q=call.args["q"][None].copy())


def test_head_dim_other_than_128(call):
    q = call.args["q"]
    call(ValueError, "q", q=np.zeros(q.shape[:3] + (64,), dtype=BF16))


def test_non_contiguous_is_value_error(call):
    v = call.args["v"]
    strided = np.zeros(v.shape[:3] + (256,), dtype=BF16)[..., ::2]
    msg = call(ValueError, "v", v=strided)
    assert "contiguous" in msg


def test_lower_bound_out_of_range(call):
    msg = call(ValueError, "lower_bound", lower_bound=-6.0)
    assert "[-5, 0]" in msg
    call(ValueError, "lower_bound", lower_bound=0.5)
    call(ValueError, "lower_bound", lower_bound=float("nan"))


def test_scale_not_finite(call):
    call(ValueError, "scale", scale=float("inf"))


def test_bad_cu_seqlens_contents(call):
    cu = call.args["cu_seqlens"].copy()
    cu[-1] += 1
    call(ValueError, "cu_seqlens", cu_seqlens=cu)
    cu = call.args["cu_seqlens"].copy()
    cu[0] = 1
    call(ValueError, "cu_seqlens", cu_seqlens=cu)


def test_state_shape_must_match_num_sequences(call):
    h0 = call.args["initial_state"]
    call(ValueError, "initial_state", initial_state=np.zeros((3,) + h0.shape[1:], np.float32),
         final_state=None)


def test_read_only_output(call):
    out = call.args["out"].copy()
    out.flags.writeable = False
    msg = call(ValueError, "out", out=out)
    assert "read-only" in msg


def test_output_overlapping_an_input(call):
    q = call.args["q"]
    call(ValueError, "out", out=q)


def test_final_state_overlapping_initial_state_partially(call):
    h0 = call.args["initial_state"]
    big = np.zeros((h0.shape[0] + 1,) + h0.shape[1:], dtype=np.float32)
    call(ValueError, "final_state", initial_state=big[:-1], final_state=big[1:])


def test_batch_with_cu_seqlens(call, problem_factory):
    p = problem_factory(batch=2, seq_len=16, heads=2, state_dtype=None)
    out = np.full(p["v"].shape, np.nan, dtype=BF16)
    call(ValueError, "q", q=p["q"], k=p["k"], v=p["v"], g=p["g"], beta=p["beta"], out=out,
         initial_state=None, final_state=None, cu_seqlens=np.array([0, 16], dtype=np.int64))


def test_reference_rejects_fp16_out(call):
    call(TypeError, "out", fn=flash_kda.reference_fwd,
         out=np.zeros(call.args["v"].shape, dtype=np.float16))


def test_fwd_rejects_fp32_out(call):
    call(TypeError, "out", out=np.zeros(call.args["v"].shape, dtype=np.float32))
