"""row_topk: the k best entries of one float32 row, on the CPU (softmax_topk and sampling share it).

The ranking, module-wide in the kernels: higher value first; equal values rank the lower index
first; NaN ranks below everything, -inf included. `kernels.common.rowtopk_cuda` ranks the same way
on the GPU.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(inline="always")
def _beats(v, slot_v, slot_i):
    if slot_i < 0:
        return True
    if np.isnan(v):
        return False
    if np.isnan(slot_v):
        return True
    return v > slot_v


SCAN_CHUNK = 512  # elements whose max is taken in one vectorized pass before any per-element work


@njit(inline="always")
def _chunk_max(row, start, stop):
    """(max of the non-NaN values, count of +inf) of row[start:stop]: branch-free, so it vectorizes."""
    cm = np.float32(-np.inf)
    n_inf = 0
    for c in range(start, stop):
        v = row[c]
        cm = v if v > cm else cm  # NaN > x is False: NaN never becomes the max
        n_inf += v == np.inf
    return cm, n_inf


@njit(cache=True)
def row_topk(row, k, top_v, top_i):
    """Top-k of one row into (top_v, top_i) by the ranking above; returns (max, count of +inf).

    The row is taken in chunks: a vectorized pass finds each chunk's max, and a chunk whose max
    does not beat the current k-th entry is skipped whole (nothing in it can rank: NaN never beats a
    number, and an equal value loses to the earlier index). On a large vocabulary the top-k fills
    within the first chunks and most of the rest is skipped, so the scan runs at vector speed."""
    top_i[:] = -1
    m = -np.inf
    n_inf = 0
    for start in range(0, row.size, SCAN_CHUNK):
        stop = min(start + SCAN_CHUNK, row.size)
        cm, ci = _chunk_max(row, start, stop)
        n_inf += ci
        if cm > m:
            m = np.float64(cm)
        # what an entry must beat to rank: the k-th value once it is a number; NaN (so that no
        # comparison passes and every entry goes to _beats) while the k-th slot is empty or NaN
        thr = top_v[k - 1] if top_i[k - 1] >= 0 and not np.isnan(top_v[k - 1]) else np.nan
        if cm <= thr:
            continue
        for c in range(start, stop):
            v = np.float64(row[c])
            if v <= thr:  # the common case, one comparison
                continue
            if _beats(v, top_v[k - 1], top_i[k - 1]):
                j = k - 1
                while j > 0 and _beats(v, top_v[j - 1], top_i[j - 1]):
                    top_v[j] = top_v[j - 1]
                    top_i[j] = top_i[j - 1]
                    j -= 1
                top_v[j] = v
                top_i[j] = c
                if top_i[k - 1] >= 0 and not np.isnan(top_v[k - 1]):
                    thr = top_v[k - 1]
    return m, n_inf
