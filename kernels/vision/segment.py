"""seg_argmax: segmentation logits [B, C, H, W] -> class mask uint8 [B, H', W'].

At the model's resolution (out_hw None) each pixel takes the class of its highest logit. At another
resolution (the original image's), every class logit is first sampled bilinearly at the output
pixel (pixel-centre convention of torch's F.interpolate(align_corners=False) and OpenCV), fused:
no upsampled logits tensor is ever written. Equal logits pick the lower class index (as
np.argmax); NaN never wins over a number; a pixel with only NaN gets class 0.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.common.device import as_device_array, device_empty, on_device
from kernels.vision.segment_cuda import seg_argmax_on_device


def _check(shape, out_hw) -> None:
    if len(shape) != 4 or 0 in shape:
        raise ValueError(f"seg_argmax: logits must be a non-empty [B, C, H, W] array, got {tuple(shape)}")
    if shape[1] > 256:
        raise ValueError(f"seg_argmax: at most 256 classes fit a uint8 mask, got {shape[1]}")
    if out_hw is not None and (out_hw[0] < 1 or out_hw[1] < 1):
        raise ValueError(f"seg_argmax: out_hw must be positive, got {out_hw}")


def _taps_ref(n_out: int, n_in: int):
    f = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(f).astype(np.int64), n_in - 1)
    return i0, np.minimum(i0 + 1, n_in - 1), (f - i0).astype(np.float32)


def seg_argmax_ref(logits: np.ndarray, out_hw: tuple[int, int] | None = None) -> np.ndarray:
    """NumPy reference."""
    _check(logits.shape, out_hw)
    x = logits.astype(np.float32)
    if out_hw is not None and tuple(out_hw) != x.shape[2:]:  # the same size is no resize (as the kernels)
        y0, y1, wy = _taps_ref(out_hw[0], x.shape[2])
        x0, x1, wx = _taps_ref(out_hw[1], x.shape[3])
        wx_, wy_ = wx[None, None, None, :], wy[None, None, :, None]
        with np.errstate(invalid="ignore"):  # inf * 0 -> NaN, as in the kernels
            top = x[:, :, y0][..., x0] * (1 - wx_) + x[:, :, y0][..., x1] * wx_
            bot = x[:, :, y1][..., x0] * (1 - wx_) + x[:, :, y1][..., x1] * wx_
            x = top * (1 - wy_) + bot * wy_
    key = np.where(np.isnan(x), -np.inf, x)
    mask = key.argmax(axis=1)
    all_low = (key == -np.inf).all(axis=1)  # only -inf or NaN: the first -inf, else 0
    mask = np.where(all_low, np.argmax(~np.isnan(x), axis=1), mask)
    return mask.astype(np.uint8)


@njit(inline="always")
def _better(v, best):
    return v > best or (best != best and v == v)


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
                if _better(plane[x], best[x]):
                    best[x] = plane[x]
                    out[x] = c


@njit(cache=True)
def _taps(n_out, n_in):
    i0 = np.empty(n_out, np.int64)
    i1 = np.empty(n_out, np.int64)
    w = np.empty(n_out, np.float32)
    scale = n_in / n_out
    for d in range(n_out):
        f = max((d + 0.5) * scale - 0.5, 0.0)
        s = min(int(np.floor(f)), n_in - 1)
        i0[d], i1[d], w[d] = s, min(s + 1, n_in - 1), f - s
    return i0, i1, w


@njit(parallel=True, cache=True)
def _seg_argmax_resized(logits, mask):
    n_b, n_c, n_h, n_w = logits.shape
    out_h, out_w = mask.shape[1], mask.shape[2]
    y0, y1, wy = _taps(out_h, n_h)
    x0, x1, wx = _taps(out_w, n_w)
    for r in prange(n_b * out_h):
        b, y = r // out_h, r % out_h
        best = np.full(out_w, np.nan, np.float32)
        out = mask[b, y]
        out[:] = 0
        fy = wy[y]
        for c in range(n_c):
            top = logits[b, c, y0[y]]
            bot = logits[b, c, y1[y]]
            for x in range(out_w):
                fx = wx[x]
                t = top[x0[x]] * (np.float32(1) - fx) + top[x1[x]] * fx
                u = bot[x0[x]] * (np.float32(1) - fx) + bot[x1[x]] * fx
                v = t * (np.float32(1) - fy) + u * fy
                if _better(v, best[x]):
                    best[x] = v
                    out[x] = c


def seg_argmax(logits, out_hw: tuple[int, int] | None = None):
    """Per-pixel class of the highest logit as a uint8 mask [B, H, W].

    `out_hw` (height, width): the mask's size, e.g. the original image's; None keeps the logits'
    size. Host arrays run on the CPU; CUDA arrays on the GPU (returning a device array).
    """
    if on_device(logits):
        d = as_device_array(logits)
        _check(d.shape, out_hw)
        h, w = out_hw or d.shape[2:]
        mask = device_empty(logits, (d.shape[0], h, w), np.uint8)
        seg_argmax_on_device(logits, mask)
        return mask
    _check(logits.shape, out_hw)
    if logits.dtype != np.float32:
        logits = logits.astype(np.float32)
    logits = np.ascontiguousarray(logits)
    if out_hw is None or tuple(out_hw) == logits.shape[2:]:
        mask = np.empty((logits.shape[0], *logits.shape[2:]), np.uint8)
        _seg_argmax(logits, mask)
    else:
        mask = np.empty((logits.shape[0], *out_hw), np.uint8)
        _seg_argmax_resized(logits, mask)
    return mask
