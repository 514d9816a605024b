"""sum(exp(x - m)) over a row, vectorizable: the normalizer of a softmax over a large vocabulary.

exp is computed in float32 by Cody-Waite range reduction (x = n ln2 + r, |r| <= ln2/2), a
degree-6 polynomial for e^r (relative error below 2e-7) and 2^n applied as an integer add to the
float's exponent bits through a uint32 view. Every step is plain arithmetic, so LLVM vectorizes
it (no libm call per element). NaN entries contribute 0; entries more than 87 below the max
(whose float32 exp underflows) contribute 0.
"""

from __future__ import annotations

import numpy as np
from numba import njit

CHUNK = 512
LOG2E = np.float32(1.4426950408889634)
LN2_HI = np.float32(0.693359375)
LN2_LO = np.float32(-2.12194440e-4)
LOW = np.float32(-87.0)


@njit(inline="always", fastmath={"contract", "arcp"})
def exp_chunk(x, m, p, n):
    """p[i] = e^(x[i] - m) for i < len(x), via p's uint32 view; NaN or underflow -> 0."""
    for i in range(x.size):
        v = x[i] - m
        ok = v >= LOW  # False for NaN too
        v = v if ok else LOW
        t = np.floor(v * LOG2E + np.float32(0.5))
        r = v - t * LN2_HI - t * LN2_LO
        q = np.float32(1.0 / 720)
        q = q * r + np.float32(1.0 / 120)
        q = q * r + np.float32(1.0 / 24)
        q = q * r + np.float32(1.0 / 6)
        q = q * r + np.float32(0.5)
        q = q * r + np.float32(1.0)
        q = q * r + np.float32(1.0)
        p[i] = q if ok else np.float32(0)
        n[i] = np.int32(t) if ok else np.int32(0)
    bits = p.view(np.uint32)
    for i in range(x.size):
        bits[i] = np.uint32(np.int32(bits[i]) + (n[i] << 23)) if bits[i] != 0 else np.uint32(0)


@njit(cache=True, fastmath={"contract", "arcp", "reassoc"})
def exp_sum_shifted(row, m):
    """sum over non-NaN v in row of exp(v - m), for float32 `row` and finite max `m` (float64 result)."""
    p = np.empty(CHUNK, np.float32)
    n = np.empty(CHUNK, np.int32)
    total = 0.0
    m32 = np.float32(m)
    for start in range(0, row.size, CHUNK):
        stop = min(start + CHUNK, row.size)
        k = stop - start
        exp_chunk(row[start:stop], m32, p[:k], n[:k])
        s = np.float32(0)
        for i in range(k):
            s += p[i]
        total += s
    return total
