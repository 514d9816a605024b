"""Where data lives: host (NumPy) or a CUDA device (torch CUDA tensors, Numba device arrays).

`import torch` sits inside the functions that take a torch tensor: torch is then already loaded,
and the CPU kernels never pay its import (seconds, against ~0.5 s for numba).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda


def on_device(x: Any) -> bool:
    """True for CUDA-array-interface objects (torch CUDA tensors) and Numba device arrays.

    Numba device arrays are recognised by `copy_to_host`, which also covers the CUDA simulator's
    arrays (they carry no __cuda_array_interface__).
    """
    return hasattr(x, "__cuda_array_interface__") or hasattr(x, "copy_to_host")


def as_device_array(x: Any):
    """A Numba device array for `x`, zero-copy (torch CUDA tensors are wrapped, not copied).

    No host synchronize (`sync=False`): our kernels on a torch tensor launch on torch's current
    stream (`launch_stream`), which orders them after the work that produced it, and a wrap that
    synchronized would stall the host per call and break CUDA-graph capture."""
    if hasattr(x, "copy_to_host"):
        return x
    return cuda.as_cuda_array(x, sync=False)


_STREAMS: dict[int, Any] = {}


def launch_stream(x: Any):
    """The stream a kernel working on `x` launches on: torch's current stream for a torch CUDA
    tensor (ordered with the torch work around it, and captured with it in a CUDA graph), else
    Numba's default stream (0). Numba's handle for each torch stream is made once."""
    if not type(x).__module__.startswith("torch"):
        return 0
    import torch

    ptr = torch.cuda.current_stream(x.device).cuda_stream
    if ptr == 0:  # the legacy default stream, which is also Numba's default
        return 0
    if ptr not in _STREAMS:
        _STREAMS[ptr] = cuda.external_stream(ptr)
    return _STREAMS[ptr]


def launch_1d(n: int, threads: int = 256) -> tuple[int, int]:
    """(blocks, threads) covering n items, one item per thread."""
    return max(1, (n + threads - 1) // threads), threads


def device_empty(like: Any, shape: tuple, dtype) -> Any:
    """An uninitialised output on the GPU that holds `like`: a torch tensor from torch's caching
    allocator when `like` is a torch tensor (no cudaMalloc per call, and torch in, torch out),
    else a Numba device array."""
    if type(like).__module__.startswith("torch"):
        import torch

        return torch.empty(shape, dtype=getattr(torch, np.dtype(dtype).name), device=like.device)
    return cuda.device_array(shape, dtype=dtype)


def device_zeros(like: Any, shape: tuple, dtype) -> Any:
    """As device_empty, filled with zeros (on the GPU: torch's memset, or a copy of host zeros)."""
    if type(like).__module__.startswith("torch"):
        import torch

        return torch.zeros(shape, dtype=getattr(torch, np.dtype(dtype).name), device=like.device)
    return cuda.to_device(np.zeros(shape, dtype))


def to_host(x: Any) -> np.ndarray:
    """A GPU result (torch tensor or Numba device array) as a NumPy array."""
    if hasattr(x, "copy_to_host"):
        return x.copy_to_host()
    return x.cpu().numpy()
