"""``flash_kda.fwd`` and ``flash_kda.decode`` as the PyTorch custom ops
``torch.ops.flash_kda.fwd`` and ``torch.ops.flash_kda.decode``.

Internal to :mod:`flash_kda`; imported only when PyTorch is loaded (PyTorch
stays optional). The op mutates ``out``, ``final_state`` and ``checkpoints`` and returns
nothing; its fake (meta) implementation does nothing, which is all
``torch.compile`` needs to trace a call without a graph break. At run time the
op calls the ordinary eager ``flash_kda.fwd`` (current stream, workspace from
the caching allocator), so compiled graphs and CUDA graphs run the same code.

While Dynamo traces, ``flash_kda.fwd`` forwards to this op (see
``flash_kda._compiling``); eagerly it is not involved at all.
"""


from typing import Callable, Optional

import torch
from torch import Tensor


def register(eager_fwd: Callable[..., None]):
    """Registers ``flash_kda::fwd`` (once per process) and returns the op."""
    existing = getattr(getattr(torch.ops, "flash_kda", None), "fwd", None)
    if existing is not None and getattr(existing, "_flash_kda_registered", False):
        return existing

    @torch.library.custom_op("flash_kda::fwd", mutates_args=("out", "final_state", "checkpoints"))
    def fwd_op(
        q: Tensor,
        k: Tensor,
        v: Tensor,
        g: Tensor,
        beta: Tensor,
        scale: float,
        out: Tensor,
        A_log: Optional[Tensor],
        dt_bias: Optional[Tensor],
        lower_bound: Optional[float],
        initial_state: Optional[Tensor],
        final_state: Optional[Tensor],
        cu_seqlens: Optional[Tensor],
        # No defaults on purpose: PyTorch (2.11) drops trailing arguments equal
        # to their defaults when it re-boxes a call, and then cannot find the
        # mutated `checkpoints` by index. Every caller passes all of them.
        state_indices: Optional[Tensor],
        final_state_indices: Optional[Tensor],
        zero_start: Optional[Tensor],
        checkpoints: Optional[Tensor],
        checkpoint_offsets: Optional[Tensor],
        checkpoint_interval: int,
        gate: Optional[str],
    ) -> None:
        eager_fwd(q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound,
                  initial_state, final_state, cu_seqlens, state_indices=state_indices,
                  final_state_indices=final_state_indices, zero_start=zero_start,
                  checkpoints=checkpoints, checkpoint_offsets=checkpoint_offsets,
                  checkpoint_interval=checkpoint_interval, gate=gate)

    @fwd_op.register_fake
    def _(q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound,
          initial_state, final_state, cu_seqlens, state_indices, final_state_indices,
          zero_start, checkpoints, checkpoint_offsets, checkpoint_interval, gate) -> None:
        return None

    op = torch.ops.flash_kda.fwd
    try:
        op._flash_kda_registered = True
    except AttributeError:
        pass
    return op


def register_decode(eager_decode: Callable[..., None]):
    """Registers ``flash_kda::decode`` (once per process) and returns the op:
    mutates ``out`` and the pool ``state``; no defaults (see fwd_op)."""
    existing = getattr(getattr(torch.ops, "flash_kda", None), "decode", None)
    if existing is not None and getattr(existing, "_flash_kda_registered", False):
        return existing

    @torch.library.custom_op("flash_kda::decode", mutates_args=("out", "state"))
    def decode_op(
        q: Tensor,
        k: Tensor,
        v: Tensor,
        g: Tensor,
        beta: Tensor,
        scale: float,
        out: Tensor,
        A_log: Tensor,
        dt_bias: Tensor,
        lower_bound: float,
        state: Tensor,
        state_indices: Tensor,
        cu_seqlens: Optional[Tensor],
    ) -> None:
        eager_decode(q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound, state, state_indices,
                     cu_seqlens)

    @decode_op.register_fake
    def _(q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound, state, state_indices,
          cu_seqlens) -> None:
        return None

    op = torch.ops.flash_kda.decode
    try:
        op._flash_kda_registered = True
    except AttributeError:
        pass
    return op


def compiling() -> Callable[[], bool]:
    """The predicate ``flash_kda.fwd`` asks: true while Dynamo traces."""
    return torch.compiler.is_compiling
