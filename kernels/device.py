"""Where data lives: host (NumPy) or a CUDA device (torch CUDA tensors, Numba device arrays)."""

from __future__ import annotations

from typing import Any

from numba import cuda


def on_device(x: Any) -> bool:
    """True for CUDA-array-interface objects (torch CUDA tensors) and Numba device arrays.

    Numba device arrays are recognised by `copy_to_host`, which also covers the CUDA simulator's
    arrays (they carry no __cuda_array_interface__).
    """
    return hasattr(x, "__cuda_array_interface__") or hasattr(x, "copy_to_host")


def as_device_array(x: Any):
    """A Numba device array for `x`, zero-copy (torch CUDA tensors are wrapped, not copied)."""
    if hasattr(x, "copy_to_host"):
        return x
    return cuda.as_cuda_array(x)


def launch_1d(n: int, threads: int = 256) -> tuple[int, int]:
    """(blocks, threads) covering n items, one item per thread."""
    return max(1, (n + threads - 1) // threads), threads
