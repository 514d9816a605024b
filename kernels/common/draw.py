"""The counter-based draw shared by sample_tokens' CPU kernel and its CUDA pass (kernels/common/rowtopk_cuda.py).

Plain loops and `math` only, so the same Python source compiles with `njit` for the CPU and with
`cuda.jit(device=True)` for the GPU (`draw.py_func`): both pick the same token from the same
candidates and the same u.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB


@njit(inline="always")
def mix(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


@njit(inline="always")
def uniform(seed, row, step):
    z = mix(mix(seed + np.uint64(GOLDEN) * np.uint64(row + 1)) + np.uint64(step))
    return np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(inline="always")
def draw(top_v, top_i, n, temperature, top_p, u, e):
    """Token from the first n candidates (logits top_v, ids top_i, best first): softmax at
    `temperature` (+inf logits share all probability), the top-p prefix, then the token where the
    running mass passes u x total. `e`: a float64 scratch of at least n."""
    m = top_v[0] / temperature
    total = 0.0
    for j in range(n):
        z = top_v[j] / temperature
        e[j] = (1.0 if z == np.inf else 0.0) if m == np.inf else math.exp(z - m)
        total += e[j]
    if top_p < 1:
        acc = 0.0
        for j in range(n):
            acc += e[j] / total
            if acc >= top_p:
                n = j + 1
                break
        total = 0.0
        for j in range(n):
            total += e[j]
    target = u * total
    acc = 0.0
    for j in range(n):
        acc += e[j]
        if acc > target:
            return top_i[j]
    return top_i[n - 1]
