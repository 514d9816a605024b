"""letterbox_normalize: uint8 HWC images -> resized (or letterboxed), normalized float NCHW batch.

One pass per output pixel: bilinear sample (OpenCV INTER_LINEAR's pixel-centre convention),
optional BGR->RGB swap, (v - mean) / std, written straight into the NCHW output. Letterboxing keeps
the aspect ratio and pads with `pad_value` (on the 0..255 scale, normalized like any pixel).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit, prange


def letterbox_geometry(
    src_hw: tuple[int, int], dst_hw: tuple[int, int], letterbox: bool
) -> tuple[int, int, int, int]:
    """(new_h, new_w, pad_top, pad_left): the resized image's size and its offset in the output."""
    h, w = src_hw
    th, tw = dst_hw
    if not letterbox:
        return th, tw, 0, 0
    r = min(th / h, tw / w)
    new_h = min(th, max(1, int(h * r + 0.5)))
    new_w = min(tw, max(1, int(w * r + 0.5)))
    return new_h, new_w, (th - new_h) // 2, (tw - new_w) // 2


def _check_images(images: Sequence[np.ndarray] | np.ndarray) -> None:
    if len(images) == 0:
        raise ValueError("letterbox_normalize: empty batch")
    for i, img in enumerate(images):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(
                f"letterbox_normalize: image {i} must be uint8 HxWx3, got {img.dtype} {img.shape}"
            )
        if img.shape[0] < 1 or img.shape[1] < 1:
            raise ValueError(f"letterbox_normalize: image {i} is empty ({img.shape})")


def _src_index(dst: np.ndarray, scale: float, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV INTER_LINEAR source taps for destination coordinates `dst` (float64 math)."""
    f = (dst + 0.5) * scale - 0.5
    i0 = np.floor(f).astype(np.int64)
    frac = f - i0
    frac[i0 < 0] = 0.0
    i0[i0 < 0] = 0
    edge = i0 >= size - 1
    frac[edge] = 0.0
    i0[edge] = size - 1
    return i0, np.minimum(i0 + 1, size - 1), frac


def letterbox_normalize_ref(
    images: Sequence[np.ndarray] | np.ndarray,
    out_hw: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    bgr_to_rgb: bool = True,
    letterbox: bool = True,
    pad_value: float = 114.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NumPy reference. Returns (batch [B,3,H,W] float32, scale [B,2] (sx, sy), pad [B,2] (left, top))."""
    _check_images(images)
    th, tw = out_hw
    b = len(images)
    out = np.empty((b, 3, th, tw), np.float32)
    scales = np.empty((b, 2), np.float64)
    pads = np.empty((b, 2), np.int64)
    mean_a, std_a = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    for n, img in enumerate(images):
        h, w = img.shape[:2]
        new_h, new_w, top, left = letterbox_geometry((h, w), out_hw, letterbox)
        x0, x1, fx = _src_index(np.arange(new_w, dtype=np.float64), w / new_w, w)
        y0, y1, fy = _src_index(np.arange(new_h, dtype=np.float64), h / new_h, h)
        src = img[..., ::-1] if bgr_to_rgb else img
        src = src.astype(np.float64)
        fx_, fy_ = fx[None, :, None], fy[:, None, None]
        top_row = src[y0][:, x0] * (1 - fx_) + src[y0][:, x1] * fx_
        bot_row = src[y1][:, x0] * (1 - fx_) + src[y1][:, x1] * fx_
        resized = top_row * (1 - fy_) + bot_row * fy_  # [new_h, new_w, 3]
        canvas = np.full((th, tw, 3), pad_value, np.float64)
        canvas[top : top + new_h, left : left + new_w] = resized
        out[n] = ((canvas - mean_a) / std_a).transpose(2, 0, 1)
        scales[n] = (new_w / w, new_h / h)
        pads[n] = (left, top)
    return out, scales, pads


@njit(parallel=True, cache=True)
def _letterbox_one(img, out, new_h, new_w, top, left, mean, inv_std, pad_norm, swap):
    src_h, src_w = img.shape[0], img.shape[1]
    out_h, out_w = out.shape[1], out.shape[2]
    scale_x = src_w / new_w
    scale_y = src_h / new_h
    x0 = np.empty(new_w, np.int64)
    x1 = np.empty(new_w, np.int64)
    wx = np.empty(new_w, np.float32)
    for x in range(new_w):
        f = (x + 0.5) * scale_x - 0.5
        s = int(np.floor(f))
        f -= s
        if s < 0:
            s, f = 0, 0.0
        if s >= src_w - 1:
            s, f = src_w - 1, 0.0
        x0[x] = s
        x1[x] = min(s + 1, src_w - 1)
        wx[x] = f
    for y in prange(out_h):
        yy = y - top
        if yy < 0 or yy >= new_h:
            for c in range(3):
                out[c, y, :] = pad_norm[c]
            continue
        f = (yy + 0.5) * scale_y - 0.5
        sy = int(np.floor(f))
        f -= sy
        if sy < 0:
            sy, f = 0, 0.0
        if sy >= src_h - 1:
            sy, f = src_h - 1, 0.0
        sy1 = min(sy + 1, src_h - 1)
        wy = np.float32(f)
        for x in range(out_w):
            xx = x - left
            if xx < 0 or xx >= new_w:
                for c in range(3):
                    out[c, y, x] = pad_norm[c]
                continue
            a, b, w = x0[xx], x1[xx], wx[xx]
            for c in range(3):
                ci = 2 - c if swap else c
                t = img[sy, a, ci] * (np.float32(1) - w) + img[sy, b, ci] * w
                d = img[sy1, a, ci] * (np.float32(1) - w) + img[sy1, b, ci] * w
                v = t * (np.float32(1) - wy) + d * wy
                out[c, y, x] = (v - mean[c]) * inv_std[c]


def letterbox_normalize(
    images: Sequence[np.ndarray] | np.ndarray,
    out_hw: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    bgr_to_rgb: bool = True,
    letterbox: bool = True,
    pad_value: float = 114.0,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resize (letterbox or plain) + normalize + channel swap + HWC->NCHW, fused, on the CPU.

    `images`: a sequence of uint8 HxWx3 arrays (sizes may differ) or one uint8 [B,H,W,3] array.
    `mean`/`std`: per output (RGB if swapped) channel, on the 0..255 scale.
    Returns (batch float32 [B,3,H,W], scale [B,2] as (sx, sy), pad [B,2] as (left, top)); an
    original-image coordinate is (x - left) / sx.
    """
    _check_images(images)
    th, tw = out_hw
    b = len(images)
    if out is None:
        out = np.empty((b, 3, th, tw), np.float32)
    elif out.shape != (b, 3, th, tw) or out.dtype != np.float32:
        raise ValueError(f"letterbox_normalize: out must be float32 {(b, 3, th, tw)}")
    mean_a = np.asarray(mean, np.float32)
    inv_std = (1.0 / np.asarray(std, np.float64)).astype(np.float32)
    pad_norm = ((pad_value - mean_a) * inv_std).astype(np.float32)
    scales = np.empty((b, 2), np.float64)
    pads = np.empty((b, 2), np.int64)
    for n, img in enumerate(images):
        h, w = img.shape[:2]
        new_h, new_w, top, left = letterbox_geometry((h, w), out_hw, letterbox)
        _letterbox_one(
            np.ascontiguousarray(img), out[n], new_h, new_w, top, left,
            mean_a, inv_std, pad_norm, bgr_to_rgb,
        )  # fmt: skip
        scales[n] = (new_w / w, new_h / h)
        pads[n] = (left, top)
    return out, scales, pads
