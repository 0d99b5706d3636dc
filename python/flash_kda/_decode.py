"""The decode step over a state pool: :func:`decode`, :func:`reference_decode`,
:func:`decode_workspace_size` (re-exported by :mod:`flash_kda`).

Same conventions as :func:`flash_kda.fwd`: tensors of any DLPack framework,
nothing copied or converted, the current stream of the tensors' framework,
the workspace from its allocator (PyTorch: the caching allocator).
"""

from __future__ import annotations

import sys as _sys

from . import _C
from ._dlpack import DECODE_TENSOR_NAMES as _NAMES, prepare as _prepare

# Defined in flash_kda/__init__.py before this module is imported.
from . import _launch, _scalar  # noqa: E402

# The package itself, bound once here: its `_compiling` / `_torch_decode_op`
# are rebound by register_torch_op(), so decode reads them through the module.
# (Not `sys.modules[...]` inside decode: under torch.compile Dynamo then wraps
# all of sys.modules, and fails with "dictionary changed size during
# iteration" when building that wrapper imports a lazy module.)
_pkg = _sys.modules[__package__]

#: Most new tokens per sequence in one :func:`decode` call.
MAX_DECODE_TOKENS: int = _C.max_decode_tokens

_ARGS_DOC = """
    Shapes use ``N`` sequences, ``t`` new tokens per sequence (1..8), ``H``
    heads, ``K`` = ``V`` = 128, ``P`` pool slots. Every tensor must be
    contiguous and on the same device as ``q``; nothing is copied.

    Args:
        q, k: bf16 ``[N, t, H, K]`` (or ``[1, total, H, K]`` with
            ``cu_seqlens``), L2-normalised inside.
        v: bf16 ``[N, t, H, V]`` (or ``[1, total, H, V]``).
        g: bf16, as ``q``: gate logits before activation.
        beta: bf16 ``[N, t, H]`` (or ``[1, total, H]``): logits (sigmoid inside).
        scale: float, query scale, usually ``K ** -0.5``.
        out: bf16, as ``v``: written in place.
        A_log: fp32 ``[H]``. dt_bias: fp32 ``[H, K]``.
        lower_bound: float in ``[-5, 0]``.
        state: bf16 / fp32 ``[P, H, V, K]``: the state pool, value-major
            (``state[slot, h, v, k]``), read and updated in place.
        state_indices: int32 / int64 ``[N]``: the pool slot of each sequence;
            a negative entry marks a padding row (zero outputs, no slot
            touched). Non-negative entries must be distinct and ``< P``.
        cu_seqlens: int32 / int64 ``[N + 1]`` or None: packed layout;
            sequence ``i`` is tokens ``cu_seqlens[i] .. cu_seqlens[i + 1]``
            (1..8 tokens each).
"""

_ERRORS_DOC = """
    Raises:
        TypeError: a wrong dtype, or an argument that is not a tensor / number.
        ValueError: wrong shapes / device / layout, ``t`` outside 1..8,
            ``lower_bound`` outside ``[-5, 0]``, overlapping outputs, and on
            host tensors bad ``cu_seqlens`` contents or ``state_indices``
            entries that are ``>= P`` or repeated.
        RuntimeError: the device is not supported by this build.

    Every message starts with the offending argument's name (also the
    exception's ``argument`` attribute). A refused call writes nothing.
"""


def _arguments(q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound, state, state_indices,
               cu_seqlens):
    """The positional and keyword arguments of the _C decode entry points."""
    tensors = [q, k, v, g, beta, out, A_log, dt_bias, state, state_indices, cu_seqlens]
    bf16 = _prepare(tensors, _NAMES)
    q, k, v, g, beta, out, A_log, dt_bias, state, state_indices, cu_seqlens = tensors
    args = (q, k, v, g, beta, _scalar(scale, "scale"), out, A_log, dt_bias,
            _scalar(lower_bound, "lower_bound"), state, state_indices, cu_seqlens)
    return args, {"bf16": bf16}


def decode(q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound, state, state_indices,
           cu_seqlens=None):
    if _pkg._compiling():  # under torch.compile: the custom op torch.ops.flash_kda.decode
        return _pkg._torch_decode_op(q, k, v, g, beta, float(scale), out, A_log, dt_bias,
                                    float(lower_bound), state, state_indices, cu_seqlens)
    args, kw = _arguments(q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound, state,
                          state_indices, cu_seqlens)
    # the stream and workspace of q's framework, as for fwd (host tensors: the
    # float64 path, stored in the caller's dtypes)
    _launch(_C.decode, args, kw)
    return None


decode.__doc__ = (
    """One Kimi Delta Attention decode step over a state pool, in place.

    For each sequence ``n`` with slot ``s = state_indices[n] >= 0``: runs its
    ``t`` new tokens through the recurrence of :func:`flash_kda.fwd` starting
    from ``state[s]``, writes their outputs to ``out`` and the new state back
    to ``state[s]``. Slots not named are neither read nor written. Returns None.

    CUDA tensors: asynchronous on the current stream, no host sync and no
    allocation outside the framework's allocator (capturable in a CUDA graph).
    The contents of CUDA ``state_indices`` / ``cu_seqlens`` are checked on the
    device: bad ``cu_seqlens`` or a slot named twice fill all of ``out`` with
    NaN and write no state; an index ``>= P`` fills that sequence's outputs
    with NaN and touches no slot for it. Host tensors: computed in float64
    (the :func:`reference_decode` path), stored in the caller's dtypes, bad
    indices raise ValueError.
"""
    + _ARGS_DOC
    + """
    Example::

        # 64 sequences, one new token each, states in a pool of 1024 slots
        flash_kda.decode(q, k, v, g, beta, K ** -0.5, out, A_log, dt_bias, -5.0,
                         state=pool, state_indices=slots)
"""
    + _ERRORS_DOC
)


def reference_decode(q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound, state,
                     state_indices, cu_seqlens=None):
    args, kw = _arguments(q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound, state,
                          state_indices, cu_seqlens)
    _C.reference_decode(*args, **kw)


reference_decode.__doc__ = (
    """The float64 oracle of :func:`decode`, on host tensors.

    Same arguments and checks, except that ``out`` may also be fp32 / fp64
    and ``state`` bf16 / fp32 / fp64 (so the result need not be rounded), and
    no alignment is required. Returns None.
"""
    + _ARGS_DOC
    + _ERRORS_DOC
)


def decode_workspace_size(q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound, state,
                          state_indices, cu_seqlens=None) -> int:
    """Bytes of scratch memory :func:`decode` needs (0 on the host); validates
    the arguments exactly as :func:`decode` does. Informational: :func:`decode`
    allocates it itself."""
    args, kw = _arguments(q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound, state,
                          state_indices, cu_seqlens)
    return _C.decode_workspace_size(*args, **kw)
