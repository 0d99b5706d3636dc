#!/usr/bin/env python3
"""Forward calls for Nsight Compute (one launch each of the SM90 kernel):

    ncu --set full --import-source yes -k regex:kda_fwd_kernel -c 3 -o prof \\
        python3 bench/profile_case.py [--cases anchor,checkpoints,plain]

Cases, in the order given (default: the first three):
  anchor       H=96, T=8192, fp32 states, FlashKDA's gate (the first anchor case);
  checkpoints  H=32, 64 x 512 tokens, fp32 checkpoints every 64 tokens (issue #7);
  plain        the same without checkpoints (the plain kernel on the same work);
  softplus64   H=64, T=8192 with the softplus gate (bv64: two CTAs per head,
               prep-bound; the case the gate-branch change moved);
  anchor64     H=64, T=8192, FlashKDA's gate (bv64).

Random inputs (never zeros). Nothing is checked here: the test suites do that.
"""
import argparse

import torch

import flash_kda

D = 128


def inputs(H, lengths, gen):
    T = sum(lengths)
    def rn(*shape, dtype=torch.bfloat16, std=1.0):
        return (torch.randn(*shape, generator=gen) * std).to(dtype).cuda()
    q, k, v, g = (rn(1, T, H, D) for _ in range(4))
    beta = rn(1, T, H)
    A_log = (torch.rand(H, generator=gen)).cuda()
    dt_bias = (torch.rand(H, D, generator=gen)).cuda()
    cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0).tolist()), dtype=torch.int64).cuda()
    return q, k, v, g, beta, A_log, dt_bias, cu


def run_case(name, gen):
    if name in ("anchor", "anchor64", "softplus64"):
        H = 96 if name == "anchor" else 64
        q, k, v, g, beta, A_log, dt_bias, cu = inputs(H, [8192], gen)
        out = torch.empty_like(q)
        h = (torch.randn(1, H, D, D, generator=gen) * 0.1).cuda()
        flash_kda.fwd(q, k, v, g, beta, D ** -0.5, out, A_log=A_log, dt_bias=dt_bias,
                      lower_bound=None if name == "softplus64" else -5.0,
                      initial_state=h, final_state=h, cu_seqlens=cu)
        return
    lengths = [512] * 64
    q, k, v, g, beta, A_log, dt_bias, cu = inputs(32, lengths, gen)
    out = torch.empty_like(q)
    h = (torch.randn(64, 32, D, D, generator=gen) * 0.1).cuda()
    extra = {}
    if name == "checkpoints":
        extra = dict(checkpoints=torch.empty(64 * 8, 32, D, D, dtype=torch.float32, device="cuda"),
                     checkpoint_offsets=torch.arange(0, 64 * 8 + 1, 8, dtype=torch.int64, device="cuda"),
                     checkpoint_interval=64)
    flash_kda.fwd(q, k, v, g, beta, D ** -0.5, out, A_log=A_log, dt_bias=dt_bias, lower_bound=-5.0,
                  initial_state=h, final_state=h, cu_seqlens=cu, **extra)


CASES = ("anchor", "checkpoints", "plain", "softplus64", "anchor64")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="anchor,checkpoints,plain", help=f"comma-separated, from {', '.join(CASES)}")
    args = p.parse_args()
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}; cases: {', '.join(CASES)}")
    gen = torch.Generator().manual_seed(0)
    for name in names:
        run_case(name, gen)
    torch.cuda.synchronize()
    print("profile_case: done", ", ".join(names))


if __name__ == "__main__":
    main()
