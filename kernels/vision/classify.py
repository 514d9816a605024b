"""softmax_topk: classification logits [B, C] -> the k most likely classes and their probabilities.

Defined results for awkward inputs:
- ranking is by logit, highest first; equal logits rank the lower class index first;
- NaN logits carry no probability (0) and rank below everything, -inf included;
- +inf logits share all the probability equally;
- a row with no value above -inf has no distribution: its probabilities are NaN;
- k larger than C is clipped to C.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.common.device import as_device_array, device_empty, on_device
from kernels.common.fastexp import exp_sum_shifted
from kernels.common.rowtopk import row_topk
from kernels.common.rowtopk_cuda import MAX_K as DEVICE_MAX_K
from kernels.common.rowtopk_cuda import MODE_SOFTMAX, row_topk_device


def _check(logits: np.ndarray, k: int) -> int:
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"softmax_topk: logits must be a non-empty [B, C] array, got {logits.shape}")
    if k < 1:
        raise ValueError(f"softmax_topk: k must be >= 1, got {k}")
    return min(k, logits.shape[1])


def _row_probs_ref(row: np.ndarray) -> np.ndarray:
    v = row.astype(np.float64)
    ok = ~np.isnan(v)
    if not ok.any() or v[ok].max() == -np.inf:
        return np.full(v.shape, np.nan)
    m = v[ok].max()
    if m == np.inf:
        p = (v == np.inf).astype(np.float64)
        return p / p.sum()
    e = np.where(ok, np.exp(np.where(ok, v, -np.inf) - m), 0.0)
    return e / e.sum()


def softmax_topk_ref(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """NumPy reference: (probabilities float32 [B, k], class indices int64 [B, k])."""
    k = _check(logits, k)
    probs = np.empty((logits.shape[0], k), np.float32)
    idx = np.empty((logits.shape[0], k), np.int64)
    for b, row in enumerate(logits):
        key = np.where(np.isnan(row), -np.inf, row.astype(np.float64))
        nan_rank = np.isnan(row).astype(np.int8)  # NaN after -inf
        order = np.lexsort((np.arange(row.size), nan_rank, -key))[:k]
        probs[b] = _row_probs_ref(row)[order]
        idx[b] = order
    return probs, idx


@njit(parallel=True, cache=True)
def _softmax_topk(logits, k, probs, idx):
    for b in prange(logits.shape[0]):
        row = logits[b]
        top_v = np.empty(k, np.float64)
        top_i = np.empty(k, np.int64)
        m, n_inf = row_topk(row, k, top_v, top_i)
        idx[b] = top_i
        if m == -np.inf:  # nothing above -inf: no distribution
            probs[b] = np.nan
        elif m == np.inf:
            for j in range(k):
                probs[b, j] = 1.0 / n_inf if top_v[j] == np.inf else 0.0
        else:
            s = exp_sum_shifted(row, m)
            for j in range(k):
                v = top_v[j]
                probs[b, j] = 0.0 if np.isnan(v) else np.exp(v - m) / s


def softmax_topk(logits, k: int = 5) -> tuple:
    """Top-k classes of each row: (probabilities float32 [B, k], class indices int64 [B, k]).

    Host arrays run on the CPU; CUDA arrays (torch CUDA tensors, Numba device arrays) on the GPU,
    returning device arrays (k at most 64 there).
    """
    if on_device(logits):
        d = as_device_array(logits)
        k = _check(d, k)
        if k > DEVICE_MAX_K:
            raise ValueError(f"softmax_topk on the GPU supports k <= {DEVICE_MAX_K}, got {k}")
        probs = device_empty(logits, (d.shape[0], k), np.float32)
        idx = device_empty(logits, (d.shape[0], k), np.int64)
        row_topk_device(logits, k, MODE_SOFTMAX, probs=probs, idx=idx)
        return probs, idx
    k = _check(logits, k)
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    probs = np.empty((logits.shape[0], k), np.float32)
    idx = np.empty((logits.shape[0], k), np.int64)
    _softmax_topk(logits, k, probs, idx)
    return probs, idx
