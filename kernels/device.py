"""Where data lives: host (NumPy) or a CUDA device (anything with __cuda_array_interface__)."""

from __future__ import annotations

from typing import Any

from numba import cuda


def on_device(x: Any) -> bool:
    """True for torch CUDA tensors, Numba device arrays and other CUDA-array-interface objects."""
    return hasattr(x, "__cuda_array_interface__") or cuda.is_cuda_array(x)


def as_device_array(x: Any):
    """A Numba view of a device array, zero-copy (torch CUDA tensors included)."""
    if cuda.is_cuda_array(x) and not hasattr(x, "__cuda_array_interface__"):
        return x
    return cuda.as_cuda_array(x)


def launch_1d(n: int, threads: int = 256) -> tuple[int, int]:
    """(blocks, threads) covering n items, one item per thread."""
    return max(1, (n + threads - 1) // threads), threads
