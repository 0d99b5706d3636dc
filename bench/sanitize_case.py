#!/usr/bin/env python3
"""A tiny forward for compute-sanitizer (memcheck, racecheck, ...):

    compute-sanitizer --tool memcheck --error-exitcode 1 python3 bench/sanitize_case.py

Inputs are made on the host and copied to the device, so nearly every kernel
the sanitizer sees is flash_kda's. Cases: varlen H=2 lengths [1, 17, 0, 40]
with fp32 states (the required one), then B=2 T=19 H=2 with bf16 states;
then flash_kda.decode (see decode_cases).
Outputs are NaN-poisoned; exits 1 if any output is left unwritten or differs
from the float64 oracle by more than the accuracy bar, 2 if it cannot run.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "gpu"))

try:
    import torch
    import flash_kda
    import kda_cases
    from kda_cases import Case
except Exception as e:  # pragma: no cover
    print(f"sanitize_case: cannot run: {type(e).__name__}: {e}")
    sys.exit(2)

CASES = [
    Case(lengths=[1, 17, 0, 40], H=2, init="fp32", final="fp32", gate="normal", dt="uniform", seed=7),
    Case(B=2, T=19, H=2, init="bf16", final="bf16", gate="uniform", dt="uniform", seed=8),
]


def main() -> int:
    if not torch.cuda.is_available() or not flash_kda.cuda_available():
        print("sanitize_case: no CUDA device usable by flash_kda")
        return 2
    failed = 0
    # The first case once per value-block width (1, 2 or 4 CTAs per head).
    runs = [(CASES[0], w) for w in ("128", "64", "32")] + [(c, None) for c in CASES[1:]]
    for case, width in runs:
        if width is None:
            os.environ.pop("FLASH_KDA_VALUE_BLOCK", None)
        else:
            os.environ["FLASH_KDA_VALUE_BLOCK"] = width
        host = kda_cases.make_inputs(case, device="cpu")
        dev = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in host.items()}
        out_h, fs_h = kda_cases.new_outputs(case, host)
        out, fs = out_h.cuda(), fs_h.cuda()
        for _ in range(2):  # twice: a second call must not depend on leftovers of the first
            kda_cases.call_fwd(dev, out, fs)
        torch.cuda.synchronize()
        out_c, fs_c = out.cpu(), fs.cpu()
        ref_out, ref_final = kda_cases.reference(host)
        try:
            err = kda_cases.assert_accurate(case, host, out_c, fs_c, ref_out, ref_final)
            print(f"sanitize_case: OK {case.label()} width {width or 'auto'}: {err}")
        except AssertionError as e:
            print(f"sanitize_case: MISMATCH {case.label()} width {width or 'auto'}: {e}")
            failed += 1
    failed += checkpoint_case()
    failed += decode_cases()
    return 1 if failed else 0


def checkpoint_case() -> int:
    """bf16 and fp32 checkpoints every 16 tokens (the bf16 ones go through the
    recurrence warps' staging buffers): lengths that are multiples of 16 end
    on a checkpoint equal to their final state. Returns the number of failures."""
    failed = 0
    lengths = [48, 17, 64, 0]
    case = Case(lengths=lengths, H=2, init="fp32", final="fp32", gate="normal", dt="uniform", seed=11)
    host = kda_cases.make_inputs(case, device="cpu")
    dev = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in host.items()}
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n // 16)
    # Value blocks of 128 rows (the kernel the serving benchmarks run: eight
    # recurrence warps per CTA) and the default width of this small grid.
    runs = [(dtype, width) for width in ("128", None) for dtype in (torch.bfloat16, torch.float32)]
    for dtype, width in runs:
        if width is None:
            os.environ.pop("FLASH_KDA_VALUE_BLOCK", None)
        else:
            os.environ["FLASH_KDA_VALUE_BLOCK"] = width
        out = torch.full(tuple(dev["q"].shape), float("nan"), dtype=torch.bfloat16, device="cuda")
        final = torch.full((len(lengths), 2, 128, 128), float("nan"), dtype=torch.float32, device="cuda")
        ckpt = torch.full((offsets[-1], 2, 128, 128), float("nan"), dtype=dtype, device="cuda")
        flash_kda.fwd(dev["q"], dev["k"], dev["v"], dev["g"], dev["beta"], dev["scale"], out,
                      A_log=dev["A_log"], dt_bias=dev["dt_bias"], lower_bound=dev["lower_bound"],
                      initial_state=dev["initial_state"], final_state=final, cu_seqlens=dev["cu_seqlens"],
                      checkpoints=ckpt, checkpoint_offsets=torch.tensor(offsets, device="cuda"),
                      checkpoint_interval=16)
        torch.cuda.synchronize()
        os.environ.pop("FLASH_KDA_VALUE_BLOCK", None)
        name = f"checkpoints {str(dtype).replace('torch.', '')} value block {width or 'default'}"
        if torch.isnan(ckpt.float()).any():
            print(f"sanitize_case: MISMATCH {name}: a checkpoint row was left unwritten")
            failed += 1
            continue
        for n, length in enumerate(lengths):
            if length == 0 or length % 16:
                continue
            last = ckpt[offsets[n + 1] - 1].float()
            err = kda_cases.rel_l2(last.cpu().double(), final[n].cpu().double())
            if err > 1e-2:
                print(f"sanitize_case: MISMATCH {name}: sequence {n}'s last checkpoint vs final state {err:.3e}")
                failed += 1
        print(f"sanitize_case: OK {name}")
    return failed


def decode_cases() -> int:
    """flash_kda.decode under the sanitizer: packed bf16 pool with padding rows,
    fixed t=8 fp32 pool, and an index >= P (must poison, never touch memory
    out of bounds). Returns the number of failures."""
    try:
        import test_gpu_decode as d
    except Exception as e:  # pragma: no cover
        print(f"sanitize_case: decode cases not run: {type(e).__name__}: {e}")
        return 0 if not hasattr(flash_kda, "decode") else 1
    failed = 0
    cases = [
        ("decode packed bf16", d.make_inputs([1, 8, 3, 2], H=2, P=6, state="bf16", packed=True,
                                             padding=(2,), seed=5, device="cuda")),
        ("decode fixed t=8 fp32", d.make_inputs([8] * 3, H=2, P=5, idx="int32", seed=6, device="cuda")),
    ]
    for name, inp in cases:
        try:
            out, pool = d.run(inp)
            d.check_against_reference(inp, out, pool, name)
            print(f"sanitize_case: OK {name}")
        except AssertionError as e:
            print(f"sanitize_case: MISMATCH {name}: {e}")
            failed += 1
    inp = d.make_inputs([2] * 3, H=2, P=4, seed=9, device="cuda")
    bad = inp["state_indices"].clone()
    bad[1] = 4  # == P
    out, pool = d._poisoned_call(inp, state_indices=bad)
    if not torch.isnan(d._flat(out)[2:4].float()).all():
        print("sanitize_case: MISMATCH decode index >= P: outputs not NaN")
        failed += 1
    else:
        print("sanitize_case: OK decode index >= P poisons")
    return failed


if __name__ == "__main__":
    sys.exit(main())
