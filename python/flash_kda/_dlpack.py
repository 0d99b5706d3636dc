"""Framework detection and argument preparation for the DLPack bindings.

Internal to :mod:`flash_kda`. Every tensor argument is handed to the
extension ``flash_kda._C`` unchanged, except:

* NumPy arrays of ``ml_dtypes.bfloat16`` (NumPy's DLPack export cannot carry
  that dtype) are passed as ``arr.view(numpy.uint16)`` and their argument
  names listed, so the extension reads them as bfloat16;
* PyTorch tensors that require grad are detached (DLPack refuses to export
  them; ``fwd`` is a forward-only kernel and records no graph).

The framework of a tensor type is looked up once per type and cached.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

# Argument names in signature order (the extension uses the same names).
TENSOR_NAMES = (
    "q",
    "k",
    "v",
    "g",
    "beta",
    "out",
    "A_log",
    "dt_bias",
    "initial_state",
    "final_state",
    "cu_seqlens",
    "state_indices",
    "final_state_indices",
    "zero_start",
    "checkpoints",
    "checkpoint_offsets",
)

OTHER = 0
NUMPY = 1
TORCH = 2
CUPY = 3

try:  # ml_dtypes is optional: without it NumPy has no bfloat16.
    import ml_dtypes as _ml_dtypes

    NUMPY_BF16: np.dtype | None = np.dtype(_ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - exercised only without ml_dtypes
    NUMPY_BF16 = None

_UINT16 = np.dtype(np.uint16)
_FRAMEWORK: dict[type, int] = {np.ndarray: NUMPY}


def framework(tp: type) -> int:
    """The framework of tensor type ``tp`` (cached per type)."""
    fw = _FRAMEWORK.get(tp)
    if fw is None:
        fw = OTHER
        for cls in tp.__mro__:
            root = (cls.__module__ or "").split(".", 1)[0]
            if root == "torch":
                fw = TORCH
                break
            if root == "numpy":
                fw = NUMPY
                break
            if root == "cupy":
                fw = CUPY
                break
        _FRAMEWORK[tp] = fw
    return fw


# Argument names of ``decode`` in signature order.
DECODE_TENSOR_NAMES = (
    "q",
    "k",
    "v",
    "g",
    "beta",
    "out",
    "A_log",
    "dt_bias",
    "state",
    "state_indices",
    "cu_seqlens",
)


def prepare(tensors: list[Any], names: tuple[str, ...] = TENSOR_NAMES) -> tuple[str, ...]:
    """Rewrites ``tensors`` (in ``names`` order, TENSOR_NAMES by default) in
    place for the extension.

    Returns the names of the arguments that were bfloat16 NumPy arrays and
    are now uint16 views.
    """
    bf16: tuple[str, ...] = ()
    for i, t in enumerate(tensors):
        if t is None:
            continue
        tp = type(t)
        fw = _FRAMEWORK.get(tp)
        if fw is None:
            fw = framework(tp)
        if fw == TORCH:
            if t.requires_grad:
                tensors[i] = t.detach()
        elif fw == NUMPY:
            if NUMPY_BF16 is not None and t.dtype == NUMPY_BF16:
                tensors[i] = t.view(_UINT16)
                bf16 += (names[i],)
    return bf16


def dlpack_device(t: Any) -> tuple[int, int]:
    """(DLPack device type, device id) of any DLPack tensor; (1, 0) for host."""
    get = getattr(t, "__dlpack_device__", None)
    if get is None:
        return (1, 0)
    dev_type, dev_id = get()
    return int(dev_type), int(dev_id)


# DLPack device types that are CUDA device memory (kDLCUDA, kDLCUDAManaged).
CUDA_DEVICE_TYPES = (2, 13)


def generic_cuda_allocator(device_id: int) -> Callable[[int], Any]:
    """Workspace allocator for CUDA tensors of frameworks other than PyTorch
    and CuPy (e.g. JAX): uses PyTorch, else CuPy, whichever is installed."""

    def allocate(nbytes: int) -> Any:
        try:
            import torch

            return torch.empty(nbytes, dtype=torch.uint8, device=f"cuda:{device_id}")
        except ImportError:
            pass
        try:
            import cupy

            with cupy.cuda.Device(device_id):
                return cupy.empty(nbytes, dtype=cupy.uint8)
        except ImportError:
            pass
        raise RuntimeError(
            f"workspace: flash_kda.fwd needs a {nbytes}-byte CUDA workspace for these "
            "tensors, and allocates it with PyTorch or CuPy; neither is installed"
        )

    return allocate
