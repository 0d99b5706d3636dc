#!/usr/bin/env python3
"""Smoke test of an installed flash_kda wheel on a GPU (issue #5: a wheel built
on a machine without a GPU, for sm_90a, installs and runs on the GPU machine).

Prints where flash_kda was imported from (so the run shows it is the wheel,
not a source build) and checks fwd (both gates) and decode on CUDA tensors
against the float64 oracle. Exit status 0 when everything matches.

    python3 bench/wheel_smoke.py
"""
from __future__ import annotations

import sys


def rel(a, b) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).norm() / b.norm()).item()


def main() -> int:
    import torch

    import flash_kda

    print("flash_kda", flash_kda.__version__, "from", flash_kda.__file__)
    print(flash_kda.build_info())
    if not flash_kda.cuda_available():
        print("FAIL: the wheel has no kernels for this GPU")
        return 1
    g = torch.Generator().manual_seed(0)
    B, T, H, D = 2, 100, 4, 128

    def r(*s):
        return torch.randn(s, generator=g)

    q, k, v, gt = (r(B, T, H, D).bfloat16() for _ in range(4))
    beta = r(B, T, H).bfloat16()
    A_log, dt_bias = torch.rand(H, generator=g), torch.rand(H, D, generator=g)
    h0 = r(B, H, D, D) * 0.1
    ok = True
    for lower_bound in (-5.0, None):
        out = torch.full((B, T, H, D), float("nan"), dtype=torch.bfloat16, device="cuda")
        ht = torch.full((B, H, D, D), float("nan"), device="cuda")
        flash_kda.fwd(q.cuda(), k.cuda(), v.cuda(), gt.cuda(), beta.cuda(), D ** -0.5, out, A_log.cuda(),
                      dt_bias.cuda(), lower_bound, h0.cuda(), ht)
        ref = torch.empty((B, T, H, D), dtype=torch.float64)
        ref_ht = torch.empty((B, H, D, D), dtype=torch.float64)
        flash_kda.reference_fwd(q, k, v, gt, beta, D ** -0.5, ref, A_log, dt_bias, lower_bound, h0.double(), ref_ht)
        e_out, e_state = rel(out, ref), rel(ht, ref_ht)
        good = e_out < 5e-3 and e_state < 5e-3
        ok &= good
        print(f"fwd gate={'lower_bound' if lower_bound is not None else 'softplus'}: out {e_out:.2e}, "
              f"state {e_state:.2e} {'OK' if good else 'FAIL'}")

    # decode: 2 tokens for 3 sequences of a pool of 5 slots (one padding row)
    N, t, P = 3, 2, 5
    dq, dk, dv, dg = (r(N, t, H, D).bfloat16() for _ in range(4))
    dbeta = r(N, t, H).bfloat16()
    pool = r(P, H, D, D) * 0.1
    idx = torch.tensor([3, -1, 0], dtype=torch.int32)
    dpool = pool.cuda()
    dout = torch.full((N, t, H, D), float("nan"), dtype=torch.bfloat16, device="cuda")
    flash_kda.decode(dq.cuda(), dk.cuda(), dv.cuda(), dg.cuda(), dbeta.cuda(), D ** -0.5, dout, A_log.cuda(),
                     dt_bias.cuda(), -5.0, dpool, idx.cuda())
    rpool = pool.double()
    rout = torch.empty((N, t, H, D), dtype=torch.float64)
    flash_kda.reference_decode(dq, dk, dv, dg, dbeta, D ** -0.5, rout, A_log, dt_bias, -5.0, rpool, idx)
    e_out, e_state = rel(dout, rout), rel(dpool, rpool)
    good = e_out < 5e-3 and e_state < 5e-3 and torch.equal(dpool[1].cpu(), pool[1])
    ok &= good
    print(f"decode: out {e_out:.2e}, pool {e_state:.2e} {'OK' if good else 'FAIL'}")
    print("wheel smoke:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
