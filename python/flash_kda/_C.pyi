# Type stubs for the extension flash_kda._C (internal; use flash_kda's functions).
from typing import Any, Callable, Final, Optional, Sequence, Union

__version__: Final[str]
head_dim: Final[int]
min_lower_bound: Final[float]
max_lower_bound: Final[float]
status_ok: Final[int]
status_bad_cu_seqlens: Final[int]
status_bad_state_indices: Final[int]
status_bad_checkpoint_offsets: Final[int]
checkpoint_granule: Final[int]
built_with_cuda: Final[bool]

def fwd(
    q: Any, k: Any, v: Any, g: Any, beta: Any, scale: float, out: Any, A_log: Any,
    dt_bias: Any, lower_bound: float, initial_state: Optional[Any] = None,
    final_state: Optional[Any] = None, cu_seqlens: Optional[Any] = None,
    state_indices: Optional[Any] = None, final_state_indices: Optional[Any] = None,
    zero_start: Optional[Any] = None, checkpoints: Optional[Any] = None,
    checkpoint_offsets: Optional[Any] = None, checkpoint_interval: int = 0, *,
    stream: Optional[int] = None, workspace: Union[None, Any, Callable[[int], Any]] = None,
    bf16: Sequence[str] = (), gate_mode: int = 0,
) -> None: ...
def workspace_size(
    q: Any, k: Any, v: Any, g: Any, beta: Any, scale: float, out: Any, A_log: Any,
    dt_bias: Any, lower_bound: float, initial_state: Optional[Any] = None,
    final_state: Optional[Any] = None, cu_seqlens: Optional[Any] = None,
    state_indices: Optional[Any] = None, final_state_indices: Optional[Any] = None,
    zero_start: Optional[Any] = None, checkpoints: Optional[Any] = None,
    checkpoint_offsets: Optional[Any] = None, checkpoint_interval: int = 0, *,
    bf16: Sequence[str] = (), gate_mode: int = 0,
) -> int: ...
def reference_fwd(
    q: Any, k: Any, v: Any, g: Any, beta: Any, scale: float, out: Any, A_log: Any,
    dt_bias: Any, lower_bound: float, initial_state: Optional[Any] = None,
    final_state: Optional[Any] = None, cu_seqlens: Optional[Any] = None,
    state_indices: Optional[Any] = None, final_state_indices: Optional[Any] = None,
    zero_start: Optional[Any] = None, checkpoints: Optional[Any] = None,
    checkpoint_offsets: Optional[Any] = None, checkpoint_interval: int = 0, *,
    bf16: Sequence[str] = (), gate_mode: int = 0,
) -> None: ...
def cuda_backend_available(device_id: int = 0) -> bool: ...
def build_info() -> str: ...
def has_exchange_api(type: type) -> bool: ...

# decode over a state pool
decode_status_bad_cu_seqlens: Final[int]
decode_status_duplicate_index: Final[int]
decode_status_index_out_of_range: Final[int]
max_decode_tokens: Final[int]

def decode(
    q: Any, k: Any, v: Any, g: Any, beta: Any, scale: float, out: Any, A_log: Any,
    dt_bias: Any, lower_bound: float, state: Any, state_indices: Any,
    cu_seqlens: Optional[Any] = None, *,
    stream: Optional[int] = None, workspace: Union[None, Any, Callable[[int], Any]] = None,
    bf16: Sequence[str] = (),
) -> None: ...
def decode_workspace_size(
    q: Any, k: Any, v: Any, g: Any, beta: Any, scale: float, out: Any, A_log: Any,
    dt_bias: Any, lower_bound: float, state: Any, state_indices: Any,
    cu_seqlens: Optional[Any] = None, *,
    bf16: Sequence[str] = (),
) -> int: ...
def reference_decode(
    q: Any, k: Any, v: Any, g: Any, beta: Any, scale: float, out: Any, A_log: Any,
    dt_bias: Any, lower_bound: float, state: Any, state_indices: Any,
    cu_seqlens: Optional[Any] = None, *,
    bf16: Sequence[str] = (),
) -> None: ...
