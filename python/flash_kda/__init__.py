"""flash_kda: the Kimi Delta Attention (KDA) forward, FlashKDA-compatible.

``flash_kda.fwd`` has the signature and semantics of FlashKDA's
``flash_kda.fwd`` (the function flash-linear-attention's ``chunk_kda``
dispatches to), and accepts tensors of any framework that speaks DLPack:
PyTorch (CPU or CUDA), NumPy (bfloat16 through ``ml_dtypes``), CuPy, JAX.
Host tensors run the CPU backend; CUDA tensors run the CUDA kernels on the
framework's current stream.

Functions:

* :func:`fwd` - the forward; writes ``out`` (and ``final_state``) in place.
* :func:`reference_fwd` - the float64 token-by-token oracle, host tensors only.
* :func:`workspace_size` - bytes of scratch ``fwd`` allocates for a call.
* :func:`cuda_available` - whether this build has kernels for a CUDA device.
* :func:`build_info` - version and compiled CUDA architectures.

The math is documented in docs/kda.md of the source tree; in short, per
sequence, head and token ``t`` (``S`` is the ``V x K`` state)::

    gate = lower_bound * sigmoid(exp(A_log[h]) * (g_t + dt_bias[h]))   # gate="lower_bound"
      or  -exp(A_log[h]) * softplus(g_t + dt_bias[h])                   # gate="softplus"
      or  g_t                                                           # gate="precomputed"
    S    = S * exp(gate)[None, :]
    S    = S + sigmoid(beta_t) * (v_t - S k_t) k_t^T     # q, k L2-normalised
    o_t  = scale * S q_t
"""

from __future__ import annotations

import operator as _operator
import sys as _sys

from . import _C
from ._dlpack import (
    CUDA_DEVICE_TYPES as _CUDA_DEVICE_TYPES,
    CUPY as _CUPY,
    NUMPY as _NUMPY,
    TORCH as _TORCH,
    _FRAMEWORK,
    dlpack_device as _dlpack_device,
    framework as _framework,
    generic_cuda_allocator as _generic_cuda_allocator,
    prepare as _prepare,
)

__version__: str = _C.__version__
__all__ = [
    "fwd",
    "decode",
    "reference_decode",
    "decode_workspace_size",
    "MAX_DECODE_TOKENS",
    "register_torch_op",
    "reference_fwd",
    "workspace_size",
    "cuda_available",
    "build_info",
    "HEAD_DIM",
    "__version__",
]

#: Head size supported today: ``K == V == HEAD_DIM``.
HEAD_DIM: int = _C.head_dim

_ARGS_DOC = """
    Shapes use ``B`` batch, ``T`` tokens per row, ``H`` heads, ``K`` = ``V`` =
    128 head sizes, ``N`` sequences. Every tensor but ``beta`` must be
    contiguous (row-major) and all must live on the same device as ``q``;
    nothing is copied or converted.

    Args:
        q: bf16 ``[B, T, H, K]`` queries (L2-normalised inside).
        k: bf16 ``[B, T, H, K]`` keys (L2-normalised inside).
        v: bf16 ``[B, T, H, V]`` values.
        g: bf16 ``[B, T, H, K]`` gate logits, before activation; with
            ``gate="precomputed"`` the natural-log decay itself (``<= 0``),
            bf16 or fp32.
        beta: bf16 ``[B, T, H]`` write-strength logits (sigmoid inside).
        scale: float, query scale, usually ``K ** -0.5``.
        out: bf16 ``[B, T, H, V]``, written in place with the output.
        A_log: fp32 ``[H]``, per-head log decay rate (None with a
            precomputed gate).
        dt_bias: fp32 ``[H, K]``, per-channel gate bias (optional with the
            softplus gate: None = zeros; None with a precomputed gate).
        lower_bound: float in ``[-5, 0]``: the most negative log-decay per
            token, FlashKDA's gate; None selects Kimi-Linear's unbounded
            softplus gate (``-exp(A_log) * softplus(g + dt_bias)``).
        initial_state: bf16 / fp32 ``[N, H, V, K]`` or None (zeros): the state
            before the first token, "value-major" (``state[n, h, v, k]``).
        final_state: bf16 / fp32 ``[N, H, V, K]`` or None: written with the
            state after each sequence's last token. May be the very same
            tensor as ``initial_state`` (updated in place); when both are
            given their dtypes must match.
        cu_seqlens: int64 ``[N + 1]`` or None. With it, the ``B == 1`` row
            packs ``N`` sequences: sequence ``i`` is tokens
            ``cu_seqlens[i] .. cu_seqlens[i + 1]`` (0-based, non-decreasing,
            ending at ``T``). Without it each of the ``B`` rows is a sequence
            (``N == B``). Must be on the same device as ``q``. int32 is
            accepted too.
        gate: keyword only. ``"lower_bound"`` (FlashKDA's, the default when
            ``lower_bound`` is given), ``"softplus"`` (the default when it is
            None) or ``"precomputed"`` (``g`` is the log decay, as in
            flash-linear-attention's ``use_gate_in_kernel=False``). The
            unbounded gates are computed without overflow for any decay; the
            CUDA and CPU kernels clamp one token's log decay at -10 (what
            survives, ``exp(-10) = 4.5e-5`` of the old state, is below bf16
            resolution; see docs/numerics.md).

    Keyword-only, for serving engines (see "State pools and checkpoints"
    in the README and docs/kda.md):

        state_indices: int32 / int64 ``[N]`` or None. With it
            ``initial_state`` / ``final_state`` are pools ``[P, H, V, K]``
            (any ``P``): sequence ``n`` reads slot ``state_indices[n]`` and
            writes its final state to the same slot (in place when both are
            the very same tensor). A negative entry marks padding: nothing is
            read or written for that sequence and its ``out`` rows are zeroed.
            Non-negative entries must be distinct and ``< P``. Slots not
            named keep their bits.
        final_state_indices: int32 / int64 ``[N]`` or None (needs
            ``state_indices``): write the final state of sequence ``n`` to
            slot ``final_state_indices[n]`` instead (negative: not written).
            With ``final_state`` the very same tensor as ``initial_state``, a
            slot written by one sequence must not be read by another.
        zero_start: bool / uint8 ``[N]`` or None: true = sequence ``n``
            starts from a zero state (a new request) instead of its slot.
        checkpoints: bf16 / fp32 ``[C, H, V, K]`` or None, written: the
            state of sequence ``n`` after its tokens ``i * checkpoint_interval``
            (``i = 1 .. len_n // checkpoint_interval``, a checkpoint at the very
            end included) goes to row ``checkpoint_offsets[n] + i - 1``.
        checkpoint_offsets: int32 / int64 ``[N + 1]``, with
            ``checkpoint_offsets[n + 1] - checkpoint_offsets[n] ==
            len_n // checkpoint_interval`` and ``checkpoint_offsets[N] <= C``.
        checkpoint_interval: 0 (no checkpoints) or a positive multiple of 16.

    ``beta`` may have any non-negative strides (for example a slice of a
    wider projection); every other tensor must be contiguous.

    Tensors may come from any framework that supports DLPack: PyTorch,
    NumPy (bfloat16 as ``ml_dtypes.bfloat16``), CuPy, JAX (inputs only: JAX
    arrays are immutable).
"""

_ERRORS_DOC = """
    Raises:
        TypeError: a tensor has the wrong dtype (for example fp16 where bf16 is
            required), or an argument is not a tensor / number.
        ValueError: a wrong shape, rank, device, layout (non-contiguous or
            misaligned), overlapping outputs, ``lower_bound`` outside
            ``[-5, 0]``, a non-finite ``scale``, bad host ``cu_seqlens``
            contents, ``B != 1`` with ``cu_seqlens``, a read-only output.
        RuntimeError: the device is not supported by this build (for example
            a CUDA tensor in a CPU-only build, or a GPU without kernels).

    Every message starts with the offending argument's name ("q: expected
    dtype bfloat16, got float16"), which is also the exception's
    ``argument`` attribute. A refused call writes nothing.
"""


def _scalar(x: object, name: str) -> float:
    if type(x) is float:
        return x  # type: ignore[return-value]
    if isinstance(x, (str, bytes)):
        err = TypeError(f"{name}: expected a real number, got {type(x).__name__}")
        err.argument = name  # type: ignore[attr-defined]
        raise err
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        err = TypeError(f"{name}: expected a real number, got {type(x).__name__}")
        err.argument = name  # type: ignore[attr-defined]
        raise err from None


_GATE_MODES = {"lower_bound": 0, "softplus": 1, "precomputed": 2}


def _gate_mode(gate, lower_bound):
    """(gate mode number, lower_bound as float) from the ``gate`` keyword:
    None picks ``"lower_bound"`` when a lower bound is given, else ``"softplus"``."""
    if gate is None:
        gate = "softplus" if lower_bound is None else "lower_bound"
    mode = _GATE_MODES.get(gate) if isinstance(gate, str) else None
    if mode is None:
        err = ValueError(f"gate: expected 'lower_bound', 'softplus', 'precomputed' or None, got {gate!r}")
        err.argument = "gate"  # type: ignore[attr-defined]
        raise err
    if mode == 0:
        if lower_bound is None:
            err = ValueError("lower_bound: the 'lower_bound' gate needs a value in [-5, 0], got None")
            err.argument = "lower_bound"  # type: ignore[attr-defined]
            raise err
        return mode, _scalar(lower_bound, "lower_bound")
    if lower_bound is not None:
        err = ValueError(f"lower_bound: must be None with the {gate!r} gate (it is unbounded), "
                         f"got {lower_bound!r}")
        err.argument = "lower_bound"  # type: ignore[attr-defined]
        raise err
    return mode, 0.0


def _integer(x: object, name: str) -> int:
    if type(x) is int:
        return x  # type: ignore[return-value]
    try:
        return _operator.index(x)  # type: ignore[arg-type]
    except TypeError:
        err = TypeError(f"{name}: expected an integer, got {type(x).__name__}")
        err.argument = name  # type: ignore[attr-defined]
        raise err from None


_torch_allocators: dict = {}
_exchange: dict = {}


def _torch_exchange(tp: type) -> bool:
    """Whether the extension can read tensors of type ``tp`` through the
    DLPack C exchange API (PyTorch >= 2.9); cached per type."""
    r = _exchange.get(tp)
    if r is None:
        r = _exchange[tp] = bool(_C.has_exchange_api(tp))
    return r


def _torch_allocator(device):
    alloc = _torch_allocators.get(device)
    if alloc is None:
        torch = _sys.modules["torch"]
        uint8 = torch.uint8

        def alloc(nbytes: int):
            return torch.empty(nbytes, dtype=uint8, device=device)

        _torch_allocators[device] = alloc
    return alloc


def _cupy_allocate(nbytes: int):
    cupy = _sys.modules["cupy"]
    return cupy.empty(nbytes, dtype=cupy.uint8)


def _fwd_arguments(q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound, initial_state, final_state,
                   cu_seqlens, state_indices, final_state_indices, zero_start, checkpoints,
                   checkpoint_offsets, checkpoint_interval, gate):
    """The positional and keyword arguments of _C.fwd / reference_fwd /
    workspace_size: tensors made DLPack-readable, scalars checked."""
    tensors = [q, k, v, g, beta, out, A_log, dt_bias, initial_state, final_state, cu_seqlens,
               state_indices, final_state_indices, zero_start, checkpoints, checkpoint_offsets]
    bf16 = _prepare(tensors)
    interval = _integer(checkpoint_interval, "checkpoint_interval")
    scale = _scalar(scale, "scale")
    mode, lower_bound = _gate_mode(gate, lower_bound)
    q, k, v, g, beta, out, A_log, dt_bias = tensors[:8]
    args = (q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound, *tensors[8:], interval)
    return args, {"bf16": bf16, "gate_mode": mode}


def _launch(c_fn, args, kw):
    """c_fn(*args, **kw) (an extension entry point whose first argument is q)
    on the current stream of q's framework, with its allocator for the
    workspace; host tensors need neither."""
    q = args[0]
    tp = type(q)
    fw = _FRAMEWORK.get(tp)
    if fw is None:
        fw = _framework(tp)
    if fw == _TORCH:
        if _torch_fwd_op is None:
            register_torch_op()
        if _torch_exchange(tp):
            # The extension reads the tensors through PyTorch's DLPack C
            # exchange API and takes the current stream and the workspace
            # (caching allocator) from the same table.
            return c_fn(*args, **kw)
        device = q.device
        if device.type == "cuda":
            torch = _sys.modules["torch"]
            if device.index != torch.cuda.current_device():
                # PyTorch exports CUDA tensors through DLPack only from their
                # own device; launch there too.
                with torch.cuda.device(device):
                    return c_fn(*args, stream=torch.cuda.current_stream(device).cuda_stream,
                                workspace=_torch_allocator(device), **kw)
            return c_fn(*args, stream=torch.cuda.current_stream(device).cuda_stream,
                        workspace=_torch_allocator(device), **kw)
    elif fw == _CUPY:
        cupy = _sys.modules["cupy"]
        with cupy.cuda.Device(q.device.id):
            return c_fn(*args, stream=cupy.cuda.get_current_stream().ptr, workspace=_cupy_allocate, **kw)
    elif fw != _NUMPY:
        dev_type, dev_id = _dlpack_device(q)
        if dev_type in _CUDA_DEVICE_TYPES:
            return c_fn(*args, stream=0, workspace=_generic_cuda_allocator(dev_id), **kw)
    # Host tensors: the CPU backend (needs no stream and no workspace).
    return c_fn(*args, **kw)


# PyTorch integration (torch.ops.flash_kda.fwd, for torch.compile and CUDA
# graphs): registered when PyTorch is loaded. `_compiling` is true only while
# Dynamo traces; then `fwd` becomes a call of the custom op.
_torch_fwd_op = None
_torch_decode_op = None


def _not_compiling() -> bool:
    return False


_compiling = _not_compiling


def register_torch_op():
    """Registers ``torch.ops.flash_kda.fwd`` and ``torch.ops.flash_kda.decode`` (done automatically when
    ``torch`` is imported before ``flash_kda``, or by the first eager call with
    PyTorch tensors) and returns it. Under ``torch.compile`` a call of
    :func:`fwd` becomes a call of this op, so ``fullgraph=True`` traces it."""
    global _torch_fwd_op, _torch_decode_op, _compiling
    if _torch_fwd_op is None:
        from . import _torch_op
        from ._decode import decode as _eager_decode

        _torch_fwd_op = _torch_op.register(fwd)
        _torch_decode_op = _torch_op.register_decode(_eager_decode)
        _compiling = _torch_op.compiling()
    return _torch_fwd_op


def fwd(
    q,
    k,
    v,
    g,
    beta,
    scale,
    out,
    A_log,
    dt_bias,
    lower_bound,
    initial_state=None,
    final_state=None,
    cu_seqlens=None,
    *,
    state_indices=None,
    final_state_indices=None,
    zero_start=None,
    checkpoints=None,
    checkpoint_offsets=None,
    checkpoint_interval=0,
    gate=None,
):
    if _compiling():
        return _torch_fwd_op(q, k, v, g, beta, float(scale), out, A_log, dt_bias,
                             None if lower_bound is None else float(lower_bound),
                             initial_state, final_state, cu_seqlens,
                             state_indices, final_state_indices, zero_start, checkpoints,
                             checkpoint_offsets, int(checkpoint_interval), gate)
    args, kw = _fwd_arguments(q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound, initial_state,
                              final_state, cu_seqlens, state_indices, final_state_indices, zero_start,
                              checkpoints, checkpoint_offsets, checkpoint_interval, gate)
    _launch(_C.fwd, args, kw)
    return None


fwd.__doc__ = (
    """Kimi Delta Attention forward, in place (FlashKDA's ``flash_kda.fwd``).

    Computes the gated delta-rule recurrence of every sequence and head and
    writes the output to ``out`` and, if given, the last state of each
    sequence to ``final_state``. Returns None.

    Host tensors run the CPU backend (parallel over sequences and heads).
    CUDA tensors run the CUDA kernels asynchronously on the current stream of
    the tensors' framework (PyTorch: ``torch.cuda.current_stream()``; CuPy:
    ``cupy.cuda.get_current_stream()``; others: the default stream), with a
    scratch workspace allocated by that framework (PyTorch's caching
    allocator) only when :func:`workspace_size` is non-zero. The call does
    not synchronise the host; with CUDA ``cu_seqlens`` its contents are
    checked on the device (no sync), and a bad one computes nothing and fills
    ``out`` and ``final_state`` with NaN, never a plausible-looking result.
    CUDA ``state_indices`` / ``final_state_indices`` (out of range or
    duplicated) and ``checkpoint_offsets`` are checked the same way: when bad,
    ``out`` and ``checkpoints`` are NaN-filled and no pool slot is written.
    Host tensors are checked directly (ValueError).
"""
    + _ARGS_DOC
    + """
    Example (FlashKDA / flash-linear-attention call style)::

        flash_kda.fwd(q, k, v, g, beta, scale, out,
                      A_log=A_log, dt_bias=dt_bias, lower_bound=-5.0,
                      initial_state=h0, final_state=ht, cu_seqlens=cu_seqlens)
"""
    + _ERRORS_DOC
)


def reference_fwd(
    q,
    k,
    v,
    g,
    beta,
    scale,
    out,
    A_log,
    dt_bias,
    lower_bound,
    initial_state=None,
    final_state=None,
    cu_seqlens=None,
    *,
    state_indices=None,
    final_state_indices=None,
    zero_start=None,
    checkpoints=None,
    checkpoint_offsets=None,
    checkpoint_interval=0,
    gate=None,
):
    args, kw = _fwd_arguments(q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound, initial_state,
                              final_state, cu_seqlens, state_indices, final_state_indices, zero_start,
                              checkpoints, checkpoint_offsets, checkpoint_interval, gate)
    _C.reference_fwd(*args, **kw)


reference_fwd.__doc__ = (
    """The float64 token-by-token oracle of :func:`fwd`, on host tensors.

    Same arguments and checks as :func:`fwd`, computed exactly as the
    recurrence of docs/kda.md in float64 (slow: ``O(T * H * K * V)`` scalar
    work, single pass per sequence and head). Differences from :func:`fwd`:
    every tensor must be on the host (CPU / NumPy), ``out`` may also be
    fp32 or fp64 and the states bf16, fp32 or fp64, so the result need not
    be rounded, and no alignment is required. Returns None.
"""
    + _ARGS_DOC
    + _ERRORS_DOC
)


def workspace_size(
    q,
    k,
    v,
    g,
    beta,
    scale,
    out,
    A_log,
    dt_bias,
    lower_bound,
    initial_state=None,
    final_state=None,
    cu_seqlens=None,
    *,
    state_indices=None,
    final_state_indices=None,
    zero_start=None,
    checkpoints=None,
    checkpoint_offsets=None,
    checkpoint_interval=0,
    gate=None,
) -> int:
    args, kw = _fwd_arguments(q, k, v, g, beta, scale, out, A_log, dt_bias, lower_bound, initial_state,
                              final_state, cu_seqlens, state_indices, final_state_indices, zero_start,
                              checkpoints, checkpoint_offsets, checkpoint_interval, gate)
    return _C.workspace_size(*args, **kw)


workspace_size.__doc__ = (
    """Bytes of scratch memory :func:`fwd` needs for these arguments.

    0 for host tensors. :func:`fwd` allocates it by itself (with the tensors'
    framework), so this is informational: for memory planning or to check
    arguments without running anything (it validates them exactly as
    :func:`fwd` does and raises the same errors).
"""
    + _ARGS_DOC
    + _ERRORS_DOC
)


def cuda_available(device_id: int = 0) -> bool:
    """True when this build has CUDA kernels for CUDA device ``device_id``.

    False in a CPU-only build, without a CUDA driver or device, or when the
    device's compute capability was not compiled in (see :func:`build_info`).
    """
    return bool(_C.cuda_backend_available(int(device_id)))


def build_info() -> str:
    """A one-line description of this build: version and CUDA architectures."""
    return _C.build_info()


# The decode step over a state pool (after the helpers it shares with fwd).
from ._decode import (  # noqa: E402
    MAX_DECODE_TOKENS,
    decode,
    decode_workspace_size,
    reference_decode,
)

if "torch" in _sys.modules:
    register_torch_op()
