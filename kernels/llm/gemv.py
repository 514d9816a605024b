"""linear_rows: y = x @ W^T for a few rows of x (LLM decode on the CPU), W in bf16 or int8.

At decode a matmul has one row per sequence, so it reads the whole weight matrix to do two flops per
byte: it is a matrix-vector product and its speed is the memory bandwidth it reaches. On the 2-core
reference CPU torch's bf16 `linear` at one row reads about 15 GB/s of the ~38 GB/s the socket gives
a plain sum; this kernel reads the weights once, in order, a row of W at a time (kept in L1 while
every row of x uses it), widening bf16 to float32 with a shift, and reaches 25-29 GB/s
(`modelpower kernels`: 1.8x torch's bf16 linear on a 272 MB weight).

- bf16 weights are passed as their uint16 bit patterns (`torch_bf16.view(torch.int16)`); int8
  weights with float32 per-output-channel `scales` (int8 weight-only quantization: y = (x @ W^T) * s).
- Accumulation is float32 (fastmath: the order of the sum is the compiler's), as in the BLAS it
  replaces; NaN and inf in x or W propagate as in a plain dot product.
- Meant for a few rows (decode). On the reference CPU, on qwen2-0.5b's projection shapes, it beats
  torch's bf16 `linear` 1.5-2x at one row and mostly up to 4; at 8 rows torch's blocked GEMM wins,
  so the caller (`models.llm_linear`) sends it at most 4 rows.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.common.bits import bf16_bits_to_f32_ref, bf16_to_f32


@njit(parallel=True, fastmath=True, cache=True)
def _rows_bf16(x, w, out):
    n, k = w.shape
    for i in prange(n):
        for m in range(x.shape[0]):
            acc = np.float32(0.0)
            for j in range(k):
                acc += bf16_to_f32(w[i, j]) * x[m, j]
            out[m, i] = acc


@njit(parallel=True, fastmath=True, cache=True)
def _rows_int8(x, w, scales, out):
    n, k = w.shape
    for i in prange(n):
        for m in range(x.shape[0]):
            acc = np.float32(0.0)
            for j in range(k):
                acc += np.float32(w[i, j]) * x[m, j]
            out[m, i] = acc * scales[i]


def _check(x: np.ndarray, w: np.ndarray, scales: np.ndarray | None, out: np.ndarray | None) -> None:
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"linear_rows: x [M, K] and w [N, K] expected, got {x.shape} and {w.shape}")
    if x.dtype != np.float32:
        raise ValueError(f"linear_rows: x must be float32, got {x.dtype}")
    if w.dtype == np.int8:
        if scales is None or scales.shape != (w.shape[0],) or scales.dtype != np.float32:
            raise ValueError("linear_rows: int8 weights need float32 scales [N]")
    elif w.dtype != np.uint16:
        raise ValueError(f"linear_rows: w must be uint16 (bf16 bits) or int8, got {w.dtype}")
    elif scales is not None:
        raise ValueError("linear_rows: scales go with int8 weights; bf16 weights take none")
    if out is not None:
        if out.shape != (x.shape[0], w.shape[0]) or out.dtype != np.float32:
            raise ValueError(
                f"linear_rows: out must be float32 {(x.shape[0], w.shape[0])}, got {out.dtype} {out.shape}"
            )
        if not out.flags.writeable or np.shares_memory(out, x) or np.shares_memory(out, w):
            raise ValueError("linear_rows: out must be writable and must not overlap x or w")


def linear_rows(
    x: np.ndarray, w: np.ndarray, scales: np.ndarray | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """x [M, K] float32 times w [N, K] (uint16 bf16 bits, or int8 with float32 `scales` [N]) transposed:
    [M, N] float32, into `out` if given."""
    _check(x, w, scales, out)
    if out is None:
        out = np.empty((x.shape[0], w.shape[0]), np.float32)
    x = np.ascontiguousarray(x)
    if w.dtype == np.int8:
        _rows_int8(x, w, scales, out)
    else:
        _rows_bf16(x, w, out)
    return out


def linear_rows_ref(x: np.ndarray, w: np.ndarray, scales: np.ndarray | None = None) -> np.ndarray:
    """NumPy reference (float64 accumulation)."""
    _check(x, w, scales, None)
    wf = w.astype(np.float64) if w.dtype == np.int8 else bf16_bits_to_f32_ref(w).astype(np.float64)
    y = x.astype(np.float64) @ wf.T
    if scales is not None:
        y = y * scales.astype(np.float64)
    return y.astype(np.float32)


__all__ = ["linear_rows", "linear_rows_ref"]
