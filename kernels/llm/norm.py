"""rmsnorm_rows: RMSNorm of a few bf16 rows (LLM decode on the CPU), in one Numba call.

torch spends seven small ops on it (34 us per call at one row on the reference CPU, under
cProfile); this is one Numba call. It rounds as the torch module does (`models.llm.model.RMSNorm`):
x * rsqrt(mean(x^2) + eps) in float32, rounded to bf16, times the bf16 weight, rounded to bf16 again.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels.common.bits import bf16_to_f32, f32_to_bf16_bits


@njit(fastmath=True, cache=True)
def _rmsnorm(x, w, eps, out):
    for m in range(x.shape[0]):
        acc = np.float32(0.0)
        for i in range(x.shape[1]):
            v = bf16_to_f32(x[m, i])
            acc += v * v
        r = np.float32(1.0) / np.sqrt(acc / np.float32(x.shape[1]) + np.float32(eps))
        for i in range(x.shape[1]):
            y = bf16_to_f32(f32_to_bf16_bits(bf16_to_f32(x[m, i]) * r))
            out[m, i] = f32_to_bf16_bits(y * bf16_to_f32(w[i]))


def rmsnorm_rows(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """x uint16 bf16 bits [M, K], w uint16 bf16 bits [K]: the normalised rows as bf16 bits [M, K]."""
    if x.ndim != 2 or x.dtype != np.uint16 or w.shape != (x.shape[1],) or w.dtype != np.uint16:
        raise ValueError("rmsnorm_rows: x bf16 bits [M, K] and w bf16 bits [K] expected")
    out = np.empty_like(x)
    _rmsnorm(np.ascontiguousarray(x), np.ascontiguousarray(w), eps, out)
    return out


def rmsnorm_rows_ref(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """NumPy reference through torch's own ops (the module it replaces)."""
    import torch  # the reference only: the kernel module stays free of torch's import (seconds)

    xt = torch.from_numpy(x.view(np.int16)).view(torch.bfloat16)
    wt = torch.from_numpy(w.view(np.int16)).view(torch.bfloat16)
    x32 = xt.float()
    y = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(torch.bfloat16) * wt
    return y.view(torch.int16).numpy().view(np.uint16)


__all__ = ["rmsnorm_rows", "rmsnorm_rows_ref"]
