"""argsort_desc: a stable descending argsort of float32 values, NaN last (NMS order, sampling order)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def argsort_desc(x):
    """Stable descending argsort of float32 values (LSD radix on the bit pattern); NaN last."""
    n = x.size
    bits = x.view(np.uint32)
    key = np.empty(n, np.uint32)
    for i in range(n):
        b = bits[i]
        if x[i] != x[i]:
            k = np.uint32(0)
        elif x[i] == 0:
            k = np.uint32(0x80000000)  # -0.0 and +0.0 are equal
        elif b & np.uint32(0x80000000):
            k = ~b
        else:
            k = b | np.uint32(0x80000000)
        key[i] = ~k  # ascending order of ~k is descending order of x
    idx = np.arange(n)
    tmp = np.empty(n, np.int64)
    count = np.empty(2049, np.int64)
    for shift in (0, 11, 22):
        count[:] = 0
        for i in range(n):
            count[((key[i] >> shift) & 0x7FF) + 1] += 1
        if count.max() == n:  # every key has the same digit here: the pass changes nothing
            continue
        for d in range(2048):
            count[d + 1] += count[d]
        for i in range(n):
            j = idx[i]
            d = (key[j] >> shift) & 0x7FF
            tmp[count[d]] = j
            count[d] += 1
        idx, tmp = tmp, idx
    return idx
