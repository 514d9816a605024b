"""seg_argmax: segmentation logits [B, C, H, W] -> class mask uint8 [B, H, W].

Equal logits pick the lower class index (as np.argmax); NaN never wins over a number; a pixel whose
logits are all NaN gets class 0.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


def _check(logits: np.ndarray) -> None:
    if logits.ndim != 4 or 0 in logits.shape:
        raise ValueError(f"seg_argmax: logits must be a non-empty [B, C, H, W] array, got {logits.shape}")
    if logits.shape[1] > 256:
        raise ValueError(f"seg_argmax: at most 256 classes fit a uint8 mask, got {logits.shape[1]}")


def seg_argmax_ref(logits: np.ndarray) -> np.ndarray:
    """NumPy reference."""
    _check(logits)
    key = np.where(np.isnan(logits), -np.inf, logits.astype(np.float64))
    mask = key.argmax(axis=1)
    # a pixel whose numbers are all -inf or NaN: the first -inf if any, else 0
    all_low = (key == -np.inf).all(axis=1)
    first_num = np.argmax(~np.isnan(logits), axis=1)
    mask = np.where(all_low, first_num, mask)
    return mask.astype(np.uint8)


@njit(parallel=True, cache=True)
def _seg_argmax(logits, mask):
    n_b, n_c, n_h, n_w = logits.shape
    for r in prange(n_b * n_h):
        b, y = r // n_h, r % n_h
        best = logits[b, 0, y, :].copy()
        out = mask[b, y]
        out[:] = 0
        for c in range(1, n_c):
            plane = logits[b, c, y]
            for x in range(n_w):
                v = plane[x]
                bv = best[x]
                if v > bv or (np.isnan(bv) and not np.isnan(v)):
                    best[x] = v
                    out[x] = c


def seg_argmax(logits: np.ndarray) -> np.ndarray:
    """Per-pixel class of the highest logit, as a uint8 mask [B, H, W], at the logits' resolution."""
    _check(logits)
    if logits.dtype not in (np.float32, np.float64):
        logits = logits.astype(np.float32)
    logits = np.ascontiguousarray(logits)
    mask = np.empty((logits.shape[0], logits.shape[2], logits.shape[3]), np.uint8)
    _seg_argmax(logits, mask)
    return mask
