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


@njit(inline="always")
def _beats(v, slot_v, slot_i):
    if slot_i < 0:
        return True
    if np.isnan(v):
        return False
    if np.isnan(slot_v):
        return True
    return v > slot_v


@njit(parallel=True, cache=True)
def _softmax_topk(logits, k, probs, idx):
    n_rows, n_cls = logits.shape
    for b in prange(n_rows):
        row = logits[b]
        top_v = np.empty(k, np.float64)
        top_i = np.full(k, -1, np.int64)
        m = -np.inf
        n_inf = 0
        for c in range(n_cls):
            v = np.float64(row[c])
            if not np.isnan(v):
                if v > m:
                    m = v
                if v == np.inf:
                    n_inf += 1
            if _beats(v, top_v[k - 1], top_i[k - 1]):
                j = k - 1
                while j > 0 and _beats(v, top_v[j - 1], top_i[j - 1]):
                    top_v[j] = top_v[j - 1]
                    top_i[j] = top_i[j - 1]
                    j -= 1
                top_v[j] = v
                top_i[j] = c
        if m == -np.inf:
            for j in range(k):
                probs[b, j] = np.nan
                idx[b, j] = top_i[j]
            continue
        if m == np.inf:
            for j in range(k):
                probs[b, j] = 1.0 / n_inf if top_v[j] == np.inf else 0.0
                idx[b, j] = top_i[j]
            continue
        s = 0.0
        for c in range(n_cls):
            v = np.float64(row[c])
            if not np.isnan(v):
                s += np.exp(v - m)
        for j in range(k):
            v = top_v[j]
            probs[b, j] = 0.0 if np.isnan(v) else np.exp(v - m) / s
            idx[b, j] = top_i[j]


def softmax_topk(logits: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Top-k classes of each row: (probabilities float32 [B, k], class indices int64 [B, k])."""
    k = _check(logits, k)
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    probs = np.empty((logits.shape[0], k), np.float32)
    idx = np.empty((logits.shape[0], k), np.int64)
    _softmax_topk(logits, k, probs, idx)
    return probs, idx
