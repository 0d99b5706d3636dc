"""The decode step over a state pool: :func:`decode`, :func:`reference_decode`,
:func:`decode_workspace_size` (re-exported by :mod:`flash_kda`).

Same conventions as :func:`flash_kda.fwd`: tensors of any DLPack framework,
nothing copied or converted, the current stream of the tensors' framework,
the workspace from its allocator (PyTorch: the caching allocator).
"""

from __future__ import annotations

import sys as _sys

from . import _C
from ._dlpack import (
    CUDA_DEVICE_TYPES as _CUDA_DEVICE_TYPES,
    CUPY as _CUPY,
    DECODE_TENSOR_NAMES as _NAMES,
    NUMPY as _NUMPY,
    TORCH as _TORCH,
    _FRAMEWORK,
    dlpack_device as _dlpack_device,
    framework as _framework,
    generic_cuda_allocator as _generic_cuda_allocator,
    prepare as _prepare,
)

# Defined in flash_kda/__init__.py before this module is imported.
from . import _cupy_allocate, _scalar, _torch_allocator, _torch_exchange  # noqa: E402

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


def _call(fn, tensors, scale, lower_bound, **kw):
    q, k, v, g, beta, out, A_log, dt_bias, state, state_indices, cu_seqlens = tensors
    fn(q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound, state, state_indices,
       cu_seqlens, **kw)


def decode(q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound, state, state_indices,
           cu_seqlens=None):
    pkg = _sys.modules[__package__]
    if pkg._compiling():  # under torch.compile: the custom op torch.ops.flash_kda.decode
        return pkg._torch_decode_op(q, k, v, g, beta, float(scale), out, A_log, dt_bias,
                                    float(lower_bound), state, state_indices, cu_seqlens)
    tensors = [q, k, v, g, beta, out, A_log, dt_bias, state, state_indices, cu_seqlens]
    bf16 = _prepare(tensors, _NAMES)
    scale = _scalar(scale, "scale")
    lower_bound = _scalar(lower_bound, "lower_bound")
    q = tensors[0]
    tp = type(q)
    fw = _FRAMEWORK.get(tp)
    if fw is None:
        fw = _framework(tp)

    if fw == _TORCH:
        if pkg._torch_decode_op is None:
            pkg.register_torch_op()
        if _torch_exchange(tp):
            # Stream and workspace (caching allocator) through PyTorch's DLPack
            # C exchange API, as in fwd.
            _call(_C.decode, tensors, scale, lower_bound, bf16=bf16)
            return None
        device = q.device
        if device.type == "cuda":
            torch = _sys.modules["torch"]
            with torch.cuda.device(device):
                stream = torch.cuda.current_stream(device).cuda_stream
                _call(_C.decode, tensors, scale, lower_bound, stream=stream,
                      workspace=_torch_allocator(device), bf16=bf16)
            return None
    elif fw == _CUPY:
        cupy = _sys.modules["cupy"]
        with cupy.cuda.Device(q.device.id):
            stream = cupy.cuda.get_current_stream().ptr
            _call(_C.decode, tensors, scale, lower_bound, stream=stream,
                  workspace=_cupy_allocate, bf16=bf16)
        return None
    elif fw != _NUMPY:
        dev_type, dev_id = _dlpack_device(q)
        if dev_type in _CUDA_DEVICE_TYPES:
            _call(_C.decode, tensors, scale, lower_bound, stream=0,
                  workspace=_generic_cuda_allocator(dev_id), bf16=bf16)
            return None

    # Host tensors: the float64 path, stored in the caller's dtypes.
    _call(_C.decode, tensors, scale, lower_bound, bf16=bf16)
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
    tensors = [q, k, v, g, beta, out, A_log, dt_bias, state, state_indices, cu_seqlens]
    bf16 = _prepare(tensors, _NAMES)
    _call(_C.reference_decode, tensors, _scalar(scale, "scale"),
          _scalar(lower_bound, "lower_bound"), bf16=bf16)


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
    tensors = [q, k, v, g, beta, out, A_log, dt_bias, state, state_indices, cu_seqlens]
    bf16 = _prepare(tensors, _NAMES)
    q, k, v, g, beta, out, A_log, dt_bias, state, state_indices, cu_seqlens = tensors
    return _C.decode_workspace_size(q, k, v, g, beta, _scalar(scale, "scale"), out, A_log,
                                    dt_bias, _scalar(lower_bound, "lower_bound"), state,
                                    state_indices, cu_seqlens, bf16=bf16)
