"""Serving features on the GPU: state pools by slot (state_indices,
final_state_indices, zero_start, padding), checkpoints, int32 cu_seqlens,
strided beta, the device check of indices (NaN poison), CUDA graphs and the
prefix-cache round trip. Every result is compared with the float64 oracle on
fresh random inputs, outputs poisoned with NaN before each run.

FLASH_KDA_TEST_DEVICE=cpu runs the same cases through the CPU backend (the
CUDA-only tests skip).
"""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kda_cases import (  # noqa: E402
    DEVICE,
    HEAD_DIM,
    TOL_OUT,
    Case,
    make_inputs,
    nan_like,
    on_cuda,
    reference,
    rel_l2,
    state_tolerance,
    sync,
    torch,
)

D = HEAD_DIM


def _dtype(name):
    return {"bf16": torch.bfloat16, "fp32": torch.float32}[name]


def _fwd(inp, out, **kw):
    import flash_kda

    kw.setdefault("cu_seqlens", inp["cu_seqlens"])
    flash_kda.fwd(inp["q"], inp["k"], inp["v"], inp["g"], inp["beta"], inp["scale"], out,
                  A_log=inp["A_log"], dt_bias=inp["dt_bias"], lower_bound=inp["lower_bound"], **kw)


def _ranges(inp):
    cu = inp["cu_seqlens"]
    B, T = inp["q"].shape[:2]
    if cu is None:
        return [(b * T, (b + 1) * T) for b in range(B)]
    cu = [int(x) for x in cu.cpu().tolist()]
    return list(zip(cu[:-1], cu[1:]))


def _rows(out):
    """out [B, T, H, V] as [B*T, H, V]."""
    return out.reshape(-1, *out.shape[2:])


def _pool_setup(case, pool_dtype, P, seed, *, padding=(), zero=(), index_dtype=None):
    # (None: int64; not a default of torch.int64, so the module imports without torch)
    index_dtype = torch.int64 if index_dtype is None else index_dtype
    N, H = case.num_sequences, case.H
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(P, generator=gen)
    slots = perm[:N].clone()
    for n in padding:
        slots[n] = -1
    zero_start = torch.zeros(N, dtype=torch.bool)
    for n in zero:
        zero_start[n] = True
    pool = (torch.randn((P, H, D, D), generator=gen) * 0.1).to(_dtype(pool_dtype))
    return (pool.to(DEVICE), slots.to(index_dtype).to(DEVICE), zero_start.to(DEVICE), perm)


def _reference_with_pool(inp, pool, slots, zero_start):
    """Oracle: dense initial states gathered from the pool (zeros for padding
    and zero-start sequences)."""
    N = slots.numel()
    dense = torch.zeros((N,) + tuple(pool.shape[1:]), dtype=torch.float64)
    for n, s in enumerate(slots.cpu().tolist()):
        if s >= 0 and not bool(zero_start[n]):
            dense[n] = pool[s].cpu().double()
    ref_inp = dict(inp)
    ref_inp["initial_state"] = dense
    return reference(ref_inp)


# --- pools vs the oracle --------------------------------------------------------------
# (index dtypes by name: the module must import without torch, for the skip)
POOL_CASES = {
    "varlen_bf16_inplace": (dict(lengths=[37, 300, 0, 64, 129, 16], H=3), "bf16", "inplace", "int64"),
    "varlen_fp32_inplace_int32": (dict(lengths=[37, 300, 0, 64, 129, 16], H=3), "fp32", "inplace", "int32"),
    "fixed_fp32_twopools": (dict(B=5, T=200, H=2), "fp32", "twopools", "int64"),
    "varlen_bf16_final_indices": (dict(lengths=[100, 1, 250, 33], H=2), "bf16", "final_indices", "int32"),
}


@pytest.mark.parametrize("name", list(POOL_CASES))
def test_pool_matches_oracle(name):
    shape, pool_dtype, mode, index_dtype_name = POOL_CASES[name]
    index_dtype = getattr(torch, index_dtype_name)
    case = Case(init=None, final=None, seed=3000 + len(name), **shape)
    inp = make_inputs(case)
    N, H = case.num_sequences, case.H
    P = 2 * N + 3
    pool, slots, zero_start, perm = _pool_setup(case, pool_dtype, P, 77 + len(name), padding=(1,), zero=(2,),
                                                index_dtype=index_dtype)
    pool_before = pool.clone()
    final_pool = pool if mode == "inplace" else (torch.randn_like(pool.float()) * 0.1).to(pool.dtype)
    final_before = final_pool.clone()
    kw = dict(initial_state=pool, final_state=final_pool, state_indices=slots, zero_start=zero_start)
    write_slots = slots.cpu().clone()
    if mode == "final_indices":
        write_slots = perm[N:2 * N].clone()
        write_slots[3] = -1  # not written
        kw["final_state_indices"] = write_slots.to(index_dtype).to(DEVICE)
    ref_out, ref_final = _reference_with_pool(inp, pool_before.cpu(), slots.cpu(), zero_start.cpu())

    out = nan_like(tuple(inp["q"].shape), torch.bfloat16)
    _fwd(inp, out, **kw)
    sync()

    rows, ref_rows = _rows(out), _rows(ref_out)
    slot_list = slots.cpu().tolist()
    for n, (b, e) in enumerate(_ranges(inp)):
        if slot_list[n] < 0:
            assert (rows[b:e] == 0).all(), f"padding sequence {n}: out rows not zeroed"
        elif e > b:
            err = rel_l2(rows[b:e], ref_rows[b:e])
            assert err < TOL_OUT, f"sequence {n}: out rel L2 {err:.3g}"
    written = {}
    for n, s in enumerate(write_slots.tolist()):
        if slot_list[n] >= 0 and s >= 0:
            written[s] = n
    tol = state_tolerance(pool_dtype)
    for s in range(P):
        if s in written:
            err = rel_l2(final_pool[s], ref_final[written[s]])
            assert err < tol, f"slot {s} (sequence {written[s]}): final state rel L2 {err:.3g}"
        else:
            assert torch.equal(final_pool[s],
                               final_before[s]), f"untouched slot {s} changed"
    if mode != "inplace":
        assert torch.equal(pool, pool_before), "the input pool was written"


# --- checkpoints ----------------------------------------------------------------------
@pytest.mark.parametrize("width", ["128", "64", "32"])  # value-block width: 1, 2, 4 CTAs per head
@pytest.mark.parametrize("ckpt_dtype", ["bf16", "fp32"])
@pytest.mark.parametrize("interval", [16, 64])
def test_checkpoints_match_oracle_prefixes(ckpt_dtype, interval, width, monkeypatch):
    monkeypatch.setenv("FLASH_KDA_VALUE_BLOCK", width)
    case = Case(lengths=[130, 64, 0, 300, 15], H=2, init="fp32", final="fp32", seed=3100 + interval)
    inp = make_inputs(case)
    lengths = case.lengths
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n // interval)
    rows = offsets[-1] + 1
    ckpt = nan_like((rows, case.H, D, D), _dtype(ckpt_dtype))
    final = nan_like((case.num_sequences, case.H, D, D), torch.float32)
    out = nan_like(tuple(inp["q"].shape), torch.bfloat16)
    _fwd(inp, out, initial_state=inp["initial_state"], final_state=final, checkpoints=ckpt,
         checkpoint_offsets=torch.tensor(offsets, dtype=torch.int32, device=DEVICE), checkpoint_interval=interval)
    sync()
    assert torch.isnan(ckpt[-1]).all(), "a spare checkpoint row was written"
    ref_out, ref_final = reference(inp)
    assert rel_l2(out, ref_out) < TOL_OUT
    assert rel_l2(final, ref_final) < state_tolerance("fp32")
    # The oracle's state after each checkpoint position: a prefix call.
    starts = _ranges(inp)
    for n, (b, e) in enumerate(starts):
        for i in range(1, (e - b) // interval + 1):
            pre = _prefix_inputs(inp, n, b, b + i * interval)
            _, pre_final = reference(pre)
            err = rel_l2(ckpt[offsets[n] + i - 1], pre_final[0])
            assert err < state_tolerance(ckpt_dtype), f"sequence {n} checkpoint {i}: rel L2 {err:.3g}"


def _prefix_inputs(inp, n, begin, end):
    """Tokens [begin, end) of the packed inputs as one sequence starting from
    sequence n's initial state."""
    pre = dict(inp)
    for name in ("q", "k", "v", "g", "beta"):
        pre[name] = inp[name][:, begin:end].contiguous()
    pre["cu_seqlens"] = torch.tensor([0, end - begin], dtype=torch.int64, device=inp["q"].device)
    h0 = inp["initial_state"]
    pre["initial_state"] = None if h0 is None else h0[n:n + 1].contiguous()
    return pre


def test_prefix_cache_round_trip():
    """Prefill T tokens with checkpoints every 64; restart from checkpoint j
    with the remaining tokens: outputs and final state match one call."""
    T, H, interval = 512, 4, 64
    case = Case(lengths=[T], H=H, init=None, final="fp32", seed=3200)
    inp = make_inputs(case)
    ckpt = nan_like((T // interval, H, D, D), torch.float32)
    final = nan_like((1, H, D, D), torch.float32)
    out = nan_like(tuple(inp["q"].shape), torch.bfloat16)
    offs = torch.tensor([0, T // interval], dtype=torch.int64, device=DEVICE)
    _fwd(inp, out, final_state=final, checkpoints=ckpt, checkpoint_offsets=offs, checkpoint_interval=interval)
    sync()
    for j in (1, 3, 7):
        start = j * interval
        rest = _prefix_inputs(inp, 0, start, T)
        pool = ckpt.clone()  # the checkpoints as a state pool
        out2 = nan_like(tuple(rest["q"].shape), torch.bfloat16)
        final2 = nan_like((1, H, D, D), torch.float32)
        idx = torch.tensor([j - 1], dtype=torch.int32, device=DEVICE)
        pool2 = torch.cat([pool, final2]).contiguous()  # slot T/interval: where the final state goes
        fidx = torch.tensor([T // interval], dtype=torch.int32, device=DEVICE)
        _fwd(rest, out2, initial_state=pool2, final_state=pool2, state_indices=idx, final_state_indices=fidx)
        sync()
        e_out = rel_l2(out2[0], out[0, start:])
        e_state = rel_l2(pool2[T // interval], final[0])
        assert e_out < 5e-3, f"restart at {start}: out rel L2 {e_out:.3g}"
        assert e_state < 5e-3, f"restart at {start}: final state rel L2 {e_state:.3g}"
        assert torch.equal(pool2[: T // interval], ckpt), "read-only slots changed"


# --- int32 cu_seqlens, strided beta -----------------------------------------------------
def test_int32_cu_seqlens_and_strided_beta():
    case = Case(lengths=[17, 300, 5, 64], H=3, init="bf16", final="bf16", seed=3300)
    inp = make_inputs(case)
    out0 = nan_like(tuple(inp["q"].shape), torch.bfloat16)
    fs0 = nan_like((case.num_sequences, case.H, D, D), torch.bfloat16)
    _fwd(inp, out0, initial_state=inp["initial_state"], final_state=fs0)
    sync()
    ref_out, ref_final = reference(inp)
    assert rel_l2(out0, ref_out) < TOL_OUT
    beta = inp["beta"]
    wide = torch.zeros(beta.shape[:2] + (beta.shape[2] + 5,), dtype=beta.dtype, device=beta.device)
    wide[..., 2:2 + beta.shape[2]] = beta
    transposed = beta.transpose(1, 2).contiguous().transpose(1, 2)
    for label, b in (("slice of a wider tensor", wide[..., 2:2 + beta.shape[2]]), ("transposed", transposed)):
        assert not b.is_contiguous()
        for cu_dtype in (torch.int32, torch.int64):
            variant = dict(inp, beta=b, cu_seqlens=inp["cu_seqlens"].to(cu_dtype))
            out = nan_like(tuple(inp["q"].shape), torch.bfloat16)
            fs = nan_like((case.num_sequences, case.H, D, D), torch.bfloat16)
            _fwd(variant, out, initial_state=inp["initial_state"], final_state=fs)
            sync()
            assert torch.equal(out, out0), f"beta {label}, cu_seqlens {cu_dtype}: out differs"
            assert torch.equal(fs, fs0), f"beta {label}, cu_seqlens {cu_dtype}: final state differs"


# --- bad device indices: NaN poison, no slot written -----------------------------------
BAD_INDICES = {
    "duplicate": dict(state_indices=[3, 5, 3]),
    "out_of_range": dict(state_indices=[0, 9, 1]),
    "final_duplicate": dict(state_indices=[0, 1, 2], final_state_indices=[6, 6, 7]),
    "final_out_of_range": dict(state_indices=[0, 1, 2], final_state_indices=[6, 7, 8]),
    "inplace_race": dict(state_indices=[0, 1, 2], final_state_indices=[1, 5, 6]),
    "checkpoint_offsets": dict(checkpoint_offsets=[0, 1, 1, 2]),
}


@pytest.mark.cuda_only
@pytest.mark.parametrize("name", list(BAD_INDICES))
def test_bad_device_indices_poison_and_write_no_slot(name):
    case = Case(lengths=[20, 70, 24], H=2, init=None, final=None, seed=3400)
    inp = make_inputs(case)
    P = 8
    pool = (torch.randn((P, case.H, D, D)) * 0.1).to(DEVICE)
    pool_before = pool.clone()
    spec = BAD_INDICES[name]
    kw = dict(initial_state=pool, final_state=pool)
    kw["state_indices"] = torch.tensor(spec.get("state_indices", [0, 1, 2]), dtype=torch.int64, device=DEVICE)
    if "final_state_indices" in spec:
        kw["final_state_indices"] = torch.tensor(spec["final_state_indices"], dtype=torch.int32, device=DEVICE)
    ckpt = torch.zeros((4, case.H, D, D), device=DEVICE)
    kw["checkpoints"] = ckpt
    kw["checkpoint_offsets"] = torch.tensor(spec.get("checkpoint_offsets", [0, 1, 5, 6]), dtype=torch.int64,
                                            device=DEVICE)  # lengths 20, 70, 24 at 16: 1, 4, 1
    kw["checkpoint_interval"] = 16
    if name != "checkpoint_offsets":
        kw["checkpoint_offsets"] = torch.tensor([0, 1, 5, 6], dtype=torch.int64, device=DEVICE)
        kw["checkpoints"] = ckpt = torch.zeros((6, case.H, D, D), device=DEVICE)
    out = torch.zeros(tuple(inp["q"].shape), dtype=torch.bfloat16, device=DEVICE)
    _fwd(inp, out, **kw)
    sync()
    assert torch.isnan(out).all(), f"{name}: out not NaN-filled"
    assert torch.isnan(ckpt).all(), f"{name}: checkpoints not NaN-filled"
    assert torch.equal(pool, pool_before), f"{name}: a pool slot was written"
    # A valid call afterwards works.
    kw["state_indices"] = torch.tensor([4, 1, 2], dtype=torch.int64, device=DEVICE)
    kw.pop("final_state_indices", None)
    kw["checkpoint_offsets"] = torch.tensor([0, 1, 5, 6], dtype=torch.int64, device=DEVICE)
    kw["checkpoints"] = torch.zeros((6, case.H, D, D), device=DEVICE)
    out.fill_(float("nan"))
    _fwd(inp, out, **kw)
    sync()
    assert not torch.isnan(out).any()


def test_bad_host_indices_raise():
    """Host tensors: the same errors are raised directly (nothing written)."""
    if on_cuda():
        pytest.skip("host-only check (the CPU backend)")
    case = Case(lengths=[20, 70], H=2, init=None, final=None, seed=3401)
    inp = make_inputs(case)
    pool = torch.zeros((4, case.H, D, D))
    out = nan_like(tuple(inp["q"].shape), torch.bfloat16)
    with pytest.raises(ValueError, match="state_indices: expected distinct slots"):
        _fwd(inp, out, initial_state=pool, final_state=pool, state_indices=torch.tensor([1, 1]))
    assert torch.isnan(out).all()


# --- CUDA graph -----------------------------------------------------------------------
@pytest.mark.cuda_only
def test_cuda_graph_with_pool_and_checkpoints():
    """Capture a pooled call with checkpoints; replay after copying new inputs,
    new slots (a padding row, a zero start) and new lengths into the static tensors."""
    lengths_list = ([100, 1, 99, 56], [17, 0, 183, 56], [64, 64, 64, 64])
    cases = [Case(lengths=ls, H=3, init=None, final=None, seed=3500 + i) for i, ls in enumerate(lengths_list)]
    N, H, P, interval = 4, 3, 9, 32
    static = make_inputs(cases[0])
    pool = (torch.randn((P, H, D, D)) * 0.1).to(DEVICE)
    slots = torch.tensor([0, 1, 2, 3], dtype=torch.int64, device=DEVICE)
    zero = torch.zeros(N, dtype=torch.bool, device=DEVICE)
    ckpt = nan_like((8 + 1, H, D, D), torch.float32)
    offs = torch.zeros(N + 1, dtype=torch.int32, device=DEVICE)
    out = nan_like(tuple(static["q"].shape), torch.bfloat16)

    def offsets_of(lengths):
        o = [0]
        for n in lengths:
            o.append(o[-1] + n // interval)
        return o

    offs.copy_(torch.tensor(offsets_of(cases[0].lengths), dtype=torch.int32))

    def step():
        _fwd(static, out, initial_state=pool, final_state=pool, state_indices=slots, zero_start=zero,
             checkpoints=ckpt, checkpoint_offsets=offs, checkpoint_interval=interval)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    sync()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    sync()

    new_slots = ([5, -1, 7, 2], [8, 0, -1, 6])
    for case, sl in zip(cases[1:], new_slots):
        fresh = make_inputs(case)
        for name, t in fresh.items():
            if isinstance(t, torch.Tensor):
                static[name].copy_(t)
        slots.copy_(torch.tensor(sl))
        zero.copy_(torch.tensor([False, False, False, True]))
        offs.copy_(torch.tensor(offsets_of(case.lengths), dtype=torch.int32))
        before = pool.clone()
        ref_out, ref_final = _reference_with_pool(static, before.cpu(), slots.cpu(), zero.cpu())
        out.fill_(float("nan"))
        ckpt.fill_(float("nan"))
        graph.replay()
        sync()
        rows, ref_rows = _rows(out), _rows(ref_out)
        for n, (b, e) in enumerate(_ranges(static)):
            if sl[n] < 0:
                assert (rows[b:e] == 0).all()
            elif e > b:
                assert rel_l2(rows[b:e], ref_rows[b:e]) < TOL_OUT, f"replay {case.label()} sequence {n}"
        for s in range(P):
            if s in sl:
                n = sl.index(s)
                assert rel_l2(pool[s], ref_final[n]) < state_tolerance("fp32")
            else:
                assert torch.equal(pool[s], before[s]), f"untouched slot {s} changed"
        # checkpoint rows: written for real sequences, untouched (NaN) for
        # padding sequences (documented) and past the last used row
        offsets = offsets_of(case.lengths)
        for n in range(N):
            rows_n = ckpt[offsets[n]:offsets[n + 1]]
            if sl[n] < 0:
                assert torch.isnan(rows_n).all(), f"padding sequence {n} wrote checkpoints"
            else:
                assert not torch.isnan(rows_n).any(), f"sequence {n}: checkpoint rows not written"
        assert torch.isnan(ckpt[offsets[-1]:]).all()
