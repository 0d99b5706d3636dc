"""GPU tests of flash_kda.decode (one decode step over a state pool).

Against the float64 oracle flash_kda.reference_decode on fresh random inputs
(never zeros; outputs poisoned with NaN before each run): bf16 and fp32
pools, t in {1, 2, 4, 8}, random slot permutations with padding rows, fixed
and cu_seqlens layouts, int32 and int64 indices. Also: slots not named stay
bit-identical, prefill + decode agrees with the CUDA fwd over all tokens, CUDA
graph capture and replay with new values, and bad indices poison (NaN)
instead of corrupting anything.

Skips without a CUDA device (conftest.py). FLASH_KDA_TEST_DEVICE=cpu runs the
same cases through the host path (the CUDA-only tests skip; bad indices raise
there instead of poisoning), a check of the suite itself.
"""
from __future__ import annotations

import math

import pytest

from kda_cases import DEVICE, HEAD_DIM, rel_l2, sync, torch

TOL = 5e-3
TOL_PER_SEQUENCE = 1e-2
SCALE = HEAD_DIM ** -0.5


def _dtype(name):
    return {"bf16": torch.bfloat16, "fp32": torch.float32, "int32": torch.int32,
            "int64": torch.int64}[name]


def make_inputs(lengths, H, P, *, state="fp32", idx="int64", packed=False, cu="int64",
                padding=(), seed=0, lower_bound=-5.0, device=DEVICE):
    """One decode call's inputs on `device` (drawn on the host, seeded).

    lengths: tokens of each sequence (all equal unless packed). padding: the
    sequences that get a negative slot. Slots: a random permutation of the pool.
    """
    gen = torch.Generator().manual_seed(seed)
    N = len(lengths)
    if not packed:
        assert len(set(lengths)) == 1
        lead = (N, lengths[0])
    else:
        lead = (1, sum(lengths))

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale)

    inp = {
        "q": randn(*lead, H, HEAD_DIM).to(torch.bfloat16),
        "k": randn(*lead, H, HEAD_DIM).to(torch.bfloat16),
        "v": randn(*lead, H, HEAD_DIM).to(torch.bfloat16),
        "g": (torch.rand(*lead, H, HEAD_DIM, generator=gen, dtype=torch.float64) * 16 - 8).to(torch.bfloat16),
        "beta": randn(*lead, H).to(torch.bfloat16),
        "A_log": (torch.rand(H, generator=gen, dtype=torch.float64) * 2 - 1).float(),
        "dt_bias": (torch.rand(H, HEAD_DIM, generator=gen, dtype=torch.float64) * 8 - 4).float(),
        "state": randn(P, H, HEAD_DIM, HEAD_DIM).to(_dtype(state)),
        "lower_bound": lower_bound,
    }
    perm = torch.randperm(P, generator=gen)[:N].tolist()
    slots = [(-1 - i if n in padding else perm[n]) for i, n in enumerate(range(N))]
    inp["state_indices"] = torch.tensor(slots, dtype=_dtype(idx))
    inp["cu_seqlens"] = None
    if packed:
        offsets = [0]
        for length in lengths:
            offsets.append(offsets[-1] + length)
        inp["cu_seqlens"] = torch.tensor(offsets, dtype=_dtype(cu))
    inp["lengths"] = list(lengths)
    inp["H"] = H
    for key, val in list(inp.items()):
        if isinstance(val, torch.Tensor):
            inp[key] = val.to(device)
    return inp


def token_ranges(inp):
    out, start = [], 0
    for length in inp["lengths"]:
        out.append((start, start + length))
        start += length
    return out


def _flat(t):  # [N, t, H, V] or [1, total, H, V] -> [total, H, V]
    return t.reshape(-1, *t.shape[2:])


def call(fn, inp, out, state, state_indices=None, cu_seqlens="same"):
    fn(inp["q"], inp["k"], inp["v"], inp["g"], inp["beta"], SCALE, out, inp["A_log"],
       inp["dt_bias"], inp["lower_bound"], state,
       inp["state_indices"] if state_indices is None else state_indices,
       inp["cu_seqlens"] if cu_seqlens == "same" else cu_seqlens)


def reference(inp):
    """The float64 oracle on host copies: (out fp64, pool fp64 after the step)."""
    host = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in inp.items()}
    out = torch.full(tuple(inp["v"].shape), math.nan, dtype=torch.float64)
    pool = host["state"].double().clone()
    call(_flash_kda().reference_decode, host, out, pool)
    return out, pool


def _flash_kda():
    import flash_kda
    return flash_kda


def run(inp):
    """decode on the inputs' device: (out poisoned then written, pool copy after)."""
    out = torch.full(tuple(inp["v"].shape), math.nan, dtype=torch.bfloat16, device=inp["q"].device)
    pool = inp["state"].clone()
    call(_flash_kda().decode, inp, out, pool)
    sync()
    return out, pool


def bits(t):
    return t.view(torch.int16 if t.element_size() == 2 else torch.int32).cpu()


def named_slots(inp):
    return [s for s in inp["state_indices"].tolist() if 0 <= s < inp["state"].shape[0]]


def check_against_reference(inp, out, pool, what=""):
    ref_out, ref_pool = reference(inp)
    flat_out, flat_ref = _flat(out), _flat(ref_out)
    slots = inp["state_indices"].tolist()
    real_rows = []
    for n, (b, e) in enumerate(token_ranges(inp)):
        if slots[n] < 0:
            assert torch.equal(flat_out[b:e].float().cpu(), torch.zeros_like(flat_out[b:e].float().cpu())), (
                f"{what}: padding row {n} not zero")
            continue
        real_rows.extend(range(b, e))
        err = rel_l2(flat_out[b:e], flat_ref[b:e])
        assert err <= TOL_PER_SEQUENCE, f"{what}: sequence {n} out rel L2 {err:.3g}"
        err = rel_l2(pool[slots[n]], ref_pool[slots[n]])
        assert err <= TOL_PER_SEQUENCE, f"{what}: sequence {n} state rel L2 {err:.3g}"
    assert not torch.isnan(out.float()).any(), f"{what}: NaN left in out"
    if real_rows:
        rows = torch.tensor(real_rows)
        err_out = rel_l2(flat_out.cpu()[rows], flat_ref[rows])
        assert err_out <= TOL, f"{what}: out rel L2 {err_out:.3g} > {TOL}"
    named = named_slots(inp)
    if named:
        idx = torch.tensor(named)
        err_state = rel_l2(pool.cpu()[idx], ref_pool[idx])
        assert err_state <= TOL, f"{what}: state rel L2 {err_state:.3g} > {TOL}"
    # Slots not named: bit-identical (the oracle agrees).
    others = sorted(set(range(inp["state"].shape[0])) - set(named))
    if others:
        idx = torch.tensor(others)
        assert torch.equal(bits(pool.cpu()[idx]), bits(inp["state"].cpu()[idx])), f"{what}: a slot not named changed"
    # The step changed the named slots (a kernel that wrote nothing would fail above,
    # but say so plainly).
    for s in named:
        assert not torch.equal(bits(pool[s]), bits(inp["state"][s])), f"{what}: slot {s} not updated"


# ---------------------------------------------------------------------------
@pytest.mark.parametrize("state", ["fp32", "bf16"])
@pytest.mark.parametrize("t", [1, 2, 4, 8])
@pytest.mark.parametrize("idx", ["int32", "int64"])
def test_fixed_layout_matches_reference(state, t, idx):
    inp = make_inputs([t] * 13, H=4, P=40, state=state, idx=idx, padding=(2, 7),
                      seed=100 * t + (state == "bf16") * 7 + (idx == "int32"))
    out, pool = run(inp)
    check_against_reference(inp, out, pool, f"fixed state={state} t={t} idx={idx}")


@pytest.mark.parametrize("state", ["fp32", "bf16"])
@pytest.mark.parametrize("cu", ["int32", "int64"])
def test_packed_layout_matches_reference(state, cu):
    lengths = [1, 8, 3, 2, 5, 1, 4, 7, 6, 2, 1]
    inp = make_inputs(lengths, H=3, P=17, state=state, packed=True, cu=cu, padding=(4,),
                      seed=7 + (cu == "int32") + 2 * (state == "bf16"))
    out, pool = run(inp)
    check_against_reference(inp, out, pool, f"packed state={state} cu={cu}")


def test_many_sequences_and_heads():
    # A grid of several waves of CTAs; the pool larger than the batch.
    inp = make_inputs([1] * 96, H=32, P=200, state="fp32", padding=(0, 50, 95), seed=11)
    out, pool = run(inp)
    check_against_reference(inp, out, pool, "N=96 H=32")


def test_repeated_steps_carry_the_state():
    # Three decode calls in a row on one pool equal one call of the concatenated tokens.
    flash_kda = _flash_kda()
    steps = [make_inputs([2] * 5, H=2, P=9, seed=20 + i) for i in range(3)]
    for s in steps[1:]:
        s["state"], s["state_indices"] = steps[0]["state"], steps[0]["state_indices"]
        s["A_log"], s["dt_bias"] = steps[0]["A_log"], steps[0]["dt_bias"]
    pool = steps[0]["state"].clone()
    outs = []
    for s in steps:
        out = torch.full(tuple(s["v"].shape), math.nan, dtype=torch.bfloat16, device=s["q"].device)
        call(flash_kda.decode, s, out, pool)
        outs.append(out)
    sync()
    whole = dict(steps[0])
    for key in ("q", "k", "v", "g", "beta"):
        whole[key] = torch.cat([s[key] for s in steps], dim=1)
    whole["lengths"] = [6] * 5
    ref_out, ref_pool = reference(whole)
    got = torch.cat(outs, dim=1)
    assert rel_l2(got, ref_out) <= TOL
    named = torch.tensor(named_slots(whole))
    assert rel_l2(pool.cpu()[named], ref_pool[named]) <= TOL


# ---------------------------------------------------------------------------
@pytest.mark.parametrize("t", [1, 2, 4, 8])
def test_prefill_then_decode_matches_fwd(t):
    """fwd over T - t tokens, then decode of the last t from the pool, vs fwd over T."""
    flash_kda = _flash_kda()
    N, H, T, P = 4, 4, 40, 7
    full = make_inputs([T] * N, H=H, P=P, seed=300 + t)
    dev = full["q"].device
    h0 = torch.randn(N, H, HEAD_DIM, HEAD_DIM, generator=torch.Generator().manual_seed(t)).to(dev)
    want_out = torch.full(tuple(full["v"].shape), math.nan, dtype=torch.bfloat16, device=dev)
    want_state = torch.full_like(h0, math.nan)
    flash_kda.fwd(full["q"], full["k"], full["v"], full["g"], full["beta"], SCALE, want_out,
                  full["A_log"], full["dt_bias"], full["lower_bound"], h0, want_state)

    pre = {key: full[key][:, : T - t].contiguous() for key in ("q", "k", "v", "g", "beta")}
    mid_out = torch.full(tuple(pre["v"].shape), math.nan, dtype=torch.bfloat16, device=dev)
    mid_state = torch.full_like(h0, math.nan)
    flash_kda.fwd(pre["q"], pre["k"], pre["v"], pre["g"], pre["beta"], SCALE, mid_out,
                  full["A_log"], full["dt_bias"], full["lower_bound"], h0, mid_state)

    dec = dict(full)
    for key in ("q", "k", "v", "g", "beta"):
        dec[key] = full[key][:, T - t:].contiguous()
    dec["lengths"] = [t] * N
    slots = full["state_indices"].long()
    pool = torch.randn(P, H, HEAD_DIM, HEAD_DIM, device=dev)
    pool[slots] = mid_state
    out = torch.full(tuple(dec["v"].shape), math.nan, dtype=torch.bfloat16, device=dev)
    call(flash_kda.decode, dec, out, pool)
    sync()
    err_out = rel_l2(out, want_out[:, T - t:])
    err_state = rel_l2(pool[slots], want_state)
    assert err_out <= TOL, f"t={t}: out rel L2 vs fwd {err_out:.3g}"
    assert err_state <= TOL, f"t={t}: state rel L2 vs fwd {err_state:.3g}"


# ---------------------------------------------------------------------------
def _cuda_only():
    if DEVICE != "cuda":
        pytest.skip("CUDA-only behaviour (FLASH_KDA_TEST_DEVICE=cpu)")


def _step(inp, out, pool):
    call(_flash_kda().decode, inp, out, pool)
    return out.float().square().mean()  # work after the call: a compiled graph continues


def _capture_and_check(fn, packed, what):
    """Captures fn(static inputs) in a CUDA graph, replays it on fresh inputs
    copied into the static tensors, and checks each replay against the oracle."""
    lengths = [3, 1, 8, 2, 4] if packed else [4] * 5
    static = make_inputs(lengths, H=4, P=12, packed=packed, padding=(1,), seed=41)
    pool = static["state"].clone()
    out = torch.full(tuple(static["v"].shape), math.nan, dtype=torch.bfloat16, device="cuda")
    # Warm up on a side stream (allocator, lazy module loading, compilation), then capture.
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn(static, out, pool)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn(static, out, pool)
    for seed in (42, 43):
        fresh = make_inputs(lengths, H=4, P=12, packed=packed, padding=(3,), seed=seed)
        for key in ("q", "k", "v", "g", "beta", "A_log", "dt_bias", "state_indices"):
            static[key].copy_(fresh[key])
        pool.copy_(fresh["state"])
        out.fill_(math.nan)
        graph.replay()
        torch.cuda.synchronize()
        check_against_reference(fresh, out, pool, f"{what} seed={seed}")


@pytest.mark.parametrize("packed", [False, True])
def test_cuda_graph_capture_and_replay(packed):
    _cuda_only()
    _capture_and_check(lambda inp, out, pool: call(_flash_kda().decode, inp, out, pool), packed,
                       f"graph replay packed={packed}")


@pytest.mark.parametrize("packed", [False, True])
def test_compile_fullgraph_matches_eager(packed):
    """torch.compile(fullgraph=True) of a function calling flash_kda.decode
    (through torch.ops.flash_kda.decode; inductor on CUDA): the bits of eager,
    and the oracle's values."""
    lengths = [3, 1, 8, 2, 4] if packed else [2] * 5
    inp = make_inputs(lengths, H=4, P=12, packed=packed, padding=(1,), seed=61 + packed)
    torch._dynamo.reset()
    compiled = torch.compile(_step, fullgraph=True, backend="inductor" if DEVICE == "cuda" else "aot_eager")
    results = []
    for fn in (_step, compiled):
        out = torch.full(tuple(inp["v"].shape), math.nan, dtype=torch.bfloat16, device=inp["q"].device)
        pool = inp["state"].clone()
        res = fn(inp, out, pool)
        sync()
        results.append((out, pool, res))
    (out_e, pool_e, res_e), (out_c, pool_c, res_c) = results
    assert torch.equal(bits(out_c), bits(out_e)), f"packed={packed}: compiled out differs from eager"
    assert torch.equal(bits(pool_c), bits(pool_e)), f"packed={packed}: compiled pool differs from eager"
    torch.testing.assert_close(res_c, res_e)
    check_against_reference(inp, out_c, pool_c, f"compiled packed={packed}")


def test_compiled_function_in_cuda_graph():
    """A torch.compile'd function around flash_kda.decode captured in a CUDA
    graph and replayed (how serving engines run decode steps)."""
    _cuda_only()
    torch._dynamo.reset()
    _capture_and_check(torch.compile(_step, fullgraph=True), True, "compiled graph replay")


def _poisoned_call(inp, state_indices=None, cu_seqlens="same"):
    flash_kda = _flash_kda()
    out = torch.full(tuple(inp["v"].shape), math.nan, dtype=torch.bfloat16, device=inp["q"].device)
    out.zero_()  # a call that writes nothing would leave zeros, not NaN
    pool = inp["state"].clone()
    call(flash_kda.decode, inp, out, pool, state_indices=state_indices, cu_seqlens=cu_seqlens)
    sync()
    return out, pool


def test_index_out_of_range_poisons_that_sequence():
    inp = make_inputs([2] * 6, H=2, P=8, seed=51)
    bad = inp["state_indices"].clone()
    bad[3] = 8  # == P
    if DEVICE != "cuda":
        with pytest.raises(ValueError, match="state_indices"):
            _poisoned_call(inp, state_indices=bad)
        return
    out, pool = _poisoned_call(inp, state_indices=bad)
    flat = _flat(out).float()
    assert torch.isnan(flat[6:8]).all(), "sequence with slot >= P must be NaN"
    good = dict(inp)
    good["state_indices"] = bad.clone()
    good["state_indices"][3] = -1  # as padding: reference of the others
    ref_out, ref_pool = reference(good)
    others = [r for r in range(12) if r not in (6, 7)]
    assert rel_l2(flat[others], _flat(ref_out)[others]) <= TOL
    named = torch.tensor(named_slots(good))
    assert rel_l2(pool.cpu()[named], ref_pool[named]) <= TOL
    untouched = torch.tensor(sorted(set(range(8)) - set(named.tolist())))
    assert torch.equal(bits(pool.cpu()[untouched]), bits(inp["state"].cpu()[untouched]))


@pytest.mark.parametrize("where", ["same_tile", "across_tiles"])
def test_duplicate_index_poisons_the_call(where):
    N = 6 if where == "same_tile" else 2100  # the device check stages 2048 indices at a time
    inp = make_inputs([1] * N, H=1, P=N + 3, seed=61)
    bad = inp["state_indices"].clone()
    bad[N - 1] = bad[1]
    if DEVICE != "cuda":
        with pytest.raises(ValueError, match="distinct"):
            _poisoned_call(inp, state_indices=bad)
        return
    out, pool = _poisoned_call(inp, state_indices=bad)
    assert torch.isnan(out.float()).all(), "a duplicated slot must poison every output"
    assert torch.equal(bits(pool), bits(inp["state"])), "no slot may be written"
    # The same call without the duplicate is computed normally.
    out, pool = run(inp)
    if N <= 64:
        check_against_reference(inp, out, pool, "after duplicate")
    else:
        assert not torch.isnan(out.float()).any()


@pytest.mark.parametrize("bad", ["empty_sequence", "negative_length", "wrong_end"])
def test_bad_cu_seqlens_poisons_the_call(bad):
    inp = make_inputs([2, 3, 1], H=2, P=5, packed=True, seed=71)
    cu = inp["cu_seqlens"].clone()  # [0, 2, 5, 6]
    if bad == "empty_sequence":
        cu[1] = 0
    elif bad == "negative_length":
        cu[1] = -3  # sequence 0 has -3 tokens, sequence 1 has 8
    else:
        cu[3] = 5
    if DEVICE != "cuda":
        with pytest.raises(ValueError, match="cu_seqlens"):
            _poisoned_call(inp, cu_seqlens=cu)
        return
    out, pool = _poisoned_call(inp, cu_seqlens=cu)
    assert torch.isnan(out.float()).all()
    assert torch.equal(bits(pool), bits(inp["state"]))


# ---------------------------------------------------------------------------
# Both check paths: N <= 16 (each decode CTA checks the indices itself, one
# launch) and N > 16 (a separate check kernel first); see
# kFusedCheckMaxSequences in src/cuda/decode/decode_params.h.
FUSED_CHECK_MAX = 16  # kFusedCheckMaxSequences (src/cuda/decode/decode_params.h)


@pytest.mark.parametrize("N", [FUSED_CHECK_MAX, FUSED_CHECK_MAX + 1, 150])
@pytest.mark.parametrize("state", ["fp32", "bf16"])
def test_both_check_paths_out_of_range(N, state):
    P = N + 5
    inp = make_inputs([1] * N, H=2, P=P, state=state, padding=(0,), seed=80 + N)
    bad = inp["state_indices"].clone()
    bad[N - 1] = P + 7  # >= P: that sequence only
    if DEVICE != "cuda":
        with pytest.raises(ValueError, match="state_indices"):
            _poisoned_call(inp, state_indices=bad)
        return
    out, pool = _poisoned_call(inp, state_indices=bad)
    flat = _flat(out).float()
    assert torch.isnan(flat[N - 1]).all(), "sequence with slot >= P must be NaN"
    assert torch.equal(flat[0].cpu(), torch.zeros_like(flat[0].cpu())), "padding row not zero"
    good = dict(inp)
    good["state_indices"] = bad.clone()
    good["state_indices"][N - 1] = -1
    ref_out, ref_pool = reference(good)
    assert not torch.isnan(flat[:N - 1]).any()
    assert rel_l2(flat[1:N - 1], _flat(ref_out)[1:N - 1]) <= TOL
    named = torch.tensor(named_slots(good))
    assert rel_l2(pool.cpu()[named], ref_pool[named]) <= TOL
    untouched = torch.tensor(sorted(set(range(P)) - set(named.tolist())))
    assert torch.equal(bits(pool.cpu()[untouched]), bits(inp["state"].cpu()[untouched]))


@pytest.mark.parametrize("N", [2, FUSED_CHECK_MAX, FUSED_CHECK_MAX + 1, 150])
@pytest.mark.parametrize("where", ["first_last", "adjacent"])
def test_both_check_paths_duplicate(N, where):
    inp = make_inputs([1] * N, H=2, P=N + 3, state="bf16", seed=90 + N)
    bad = inp["state_indices"].clone()
    if where == "first_last":
        bad[N - 1] = bad[0]
    else:
        bad[N // 2] = bad[N // 2 - 1]
    if DEVICE != "cuda":
        with pytest.raises(ValueError, match="distinct"):
            _poisoned_call(inp, state_indices=bad)
        return
    out, pool = _poisoned_call(inp, state_indices=bad)
    assert torch.isnan(out.float()).all(), "a duplicated slot must poison every output"
    assert torch.equal(bits(pool), bits(inp["state"])), "no slot may be written"
    out, pool = run(inp)
    check_against_reference(inp, out, pool, f"N={N} after duplicate")


@pytest.mark.parametrize("N", [FUSED_CHECK_MAX, FUSED_CHECK_MAX + 1])
def test_both_check_paths_bad_cu_seqlens(N):
    lengths = [1 + (n * 5) % 8 for n in range(N)]
    inp = make_inputs(lengths, H=1, P=N + 2, packed=True, state="fp32", seed=95 + N)
    cu = inp["cu_seqlens"].clone()
    cu[N // 2] = cu[N // 2 - 1]  # an empty sequence in the middle
    if DEVICE != "cuda":
        with pytest.raises(ValueError, match="cu_seqlens"):
            _poisoned_call(inp, cu_seqlens=cu)
        return
    out, pool = _poisoned_call(inp, cu_seqlens=cu)
    assert torch.isnan(out.float()).all()
    assert torch.equal(bits(pool), bits(inp["state"]))
    out, pool = run(inp)
    check_against_reference(inp, out, pool, f"packed N={N}")
