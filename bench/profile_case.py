#!/usr/bin/env python3
"""Three forward calls for Nsight Compute (one launch each of the SM90 kernel):

    ncu --set full --import-source yes -k regex:kda_fwd_kernel -c 3 -o prof \\
        python3 bench/profile_case.py

1. H=96, T=8192, fp32 states, FlashKDA's gate (the first anchor case);
2. H=32, 64 x 512 tokens, fp32 checkpoints every 64 tokens (issue #7's
   checkpoint case), to compare its stall profile with the plain kernel's;
3. the same case without checkpoints (the plain kernel on the same work).

Random inputs (never zeros). Nothing is checked here: the test suites do that.
"""
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


def main():
    gen = torch.Generator().manual_seed(0)
    q, k, v, g, beta, A_log, dt_bias, cu = inputs(96, [8192], gen)
    out = torch.empty_like(q)
    h = (torch.randn(1, 96, D, D, generator=gen) * 0.1).cuda()
    flash_kda.fwd(q, k, v, g, beta, D ** -0.5, out, A_log=A_log, dt_bias=dt_bias, lower_bound=-5.0,
                  initial_state=h, final_state=h, cu_seqlens=cu)

    lengths = [512] * 64
    q, k, v, g, beta, A_log, dt_bias, cu = inputs(32, lengths, gen)
    out = torch.empty_like(q)
    h = (torch.randn(64, 32, D, D, generator=gen) * 0.1).cuda()
    ckpt = torch.empty(64 * 8, 32, D, D, dtype=torch.float32, device="cuda")
    offsets = torch.arange(0, 64 * 8 + 1, 8, dtype=torch.int64, device="cuda")
    flash_kda.fwd(q, k, v, g, beta, D ** -0.5, out, A_log=A_log, dt_bias=dt_bias, lower_bound=-5.0,
                  initial_state=h, final_state=h, cu_seqlens=cu, checkpoints=ckpt, checkpoint_offsets=offsets,
                  checkpoint_interval=64)
    flash_kda.fwd(q, k, v, g, beta, D ** -0.5, out, A_log=A_log, dt_bias=dt_bias, lower_bound=-5.0,
                  initial_state=h, final_state=h, cu_seqlens=cu)
    torch.cuda.synchronize()
    print("profile_case: done")


if __name__ == "__main__":
    main()
