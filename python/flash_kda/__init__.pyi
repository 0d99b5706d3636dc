# Type stubs for flash_kda. Tensors are any DLPack-capable array: torch.Tensor,
# numpy.ndarray (bfloat16 via ml_dtypes), cupy.ndarray, jax.Array, ...
from typing import Any, Final, Literal, Optional, SupportsFloat

__version__: Final[str]
HEAD_DIM: Final[int]
__all__: list[str]

Tensor = Any

def fwd(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    scale: SupportsFloat,
    out: Tensor,
    A_log: Tensor,
    dt_bias: Tensor,
    lower_bound: Optional[SupportsFloat],
    initial_state: Optional[Tensor] = None,
    final_state: Optional[Tensor] = None,
    cu_seqlens: Optional[Tensor] = None,
    *,
    state_indices: Optional[Tensor] = None,
    final_state_indices: Optional[Tensor] = None,
    zero_start: Optional[Tensor] = None,
    checkpoints: Optional[Tensor] = None,
    checkpoint_offsets: Optional[Tensor] = None,
    checkpoint_interval: int = 0,
    gate: Optional[Literal["lower_bound", "softplus", "precomputed"]] = None,
) -> None: ...
def reference_fwd(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    scale: SupportsFloat,
    out: Tensor,
    A_log: Tensor,
    dt_bias: Tensor,
    lower_bound: Optional[SupportsFloat],
    initial_state: Optional[Tensor] = None,
    final_state: Optional[Tensor] = None,
    cu_seqlens: Optional[Tensor] = None,
    *,
    state_indices: Optional[Tensor] = None,
    final_state_indices: Optional[Tensor] = None,
    zero_start: Optional[Tensor] = None,
    checkpoints: Optional[Tensor] = None,
    checkpoint_offsets: Optional[Tensor] = None,
    checkpoint_interval: int = 0,
    gate: Optional[Literal["lower_bound", "softplus", "precomputed"]] = None,
) -> None: ...
def workspace_size(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    scale: SupportsFloat,
    out: Tensor,
    A_log: Tensor,
    dt_bias: Tensor,
    lower_bound: Optional[SupportsFloat],
    initial_state: Optional[Tensor] = None,
    final_state: Optional[Tensor] = None,
    cu_seqlens: Optional[Tensor] = None,
    *,
    state_indices: Optional[Tensor] = None,
    final_state_indices: Optional[Tensor] = None,
    zero_start: Optional[Tensor] = None,
    checkpoints: Optional[Tensor] = None,
    checkpoint_offsets: Optional[Tensor] = None,
    checkpoint_interval: int = 0,
    gate: Optional[Literal["lower_bound", "softplus", "precomputed"]] = None,
) -> int: ...
def cuda_available(device_id: int = 0) -> bool: ...
def build_info() -> str: ...
def register_torch_op() -> Any: ...

# The decode step over a state pool (flash_kda/_decode.py).
MAX_DECODE_TOKENS: Final[int]

def decode(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    scale: SupportsFloat,
    out: Tensor,
    A_log: Tensor,
    dt_bias: Tensor,
    lower_bound: SupportsFloat,
    state: Tensor,
    state_indices: Tensor,
    cu_seqlens: Optional[Tensor] = None,
) -> None: ...
def reference_decode(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    scale: SupportsFloat,
    out: Tensor,
    A_log: Tensor,
    dt_bias: Tensor,
    lower_bound: SupportsFloat,
    state: Tensor,
    state_indices: Tensor,
    cu_seqlens: Optional[Tensor] = None,
) -> None: ...
def decode_workspace_size(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    scale: SupportsFloat,
    out: Tensor,
    A_log: Tensor,
    dt_bias: Tensor,
    lower_bound: SupportsFloat,
    state: Tensor,
    state_indices: Tensor,
    cu_seqlens: Optional[Tensor] = None,
) -> int: ...
