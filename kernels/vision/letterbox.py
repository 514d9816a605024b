"""letterbox_normalize: uint8 HWC images -> resized (or letterboxed), normalized NCHW batch.

One pass per output pixel: bilinear sample with OpenCV INTER_LINEAR's pixel-centre convention,
optional BGR->RGB swap, (v - mean) / std, written straight into the NCHW output as float32 or
float16. Letterboxing keeps the aspect ratio and pads with `pad_value` (on the 0..255 scale,
normalized like any pixel). CPU (Numba, parallel over output rows) or CUDA (one thread per output
pixel), chosen by where the images live.

Why it is fast on the CPU: source-tap offsets and weights are computed once per image; each output
channel row is written contiguously; unsigned offsets spare Numba's negative-index checks; and where
every horizontal weight is exactly zero (integer downscales such as 1920x1080 -> 640x360), the
second tap, which contributes nothing, is not read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
from numba import njit, prange

from kernels.common.bits import f32_bits_to_f16_bits
from kernels.common.device import as_device_array, device_empty, on_device
from kernels.vision.letterbox_cuda import letterbox_on_device

OUT_DTYPES = (np.float32, np.float16)


def letterbox_geometry(src_hw: tuple[int, int], dst_hw: tuple[int, int], letterbox: bool) -> tuple[int, int, int, int]:
    """(new_h, new_w, pad_top, pad_left): the resized image's size and its offset in the output."""
    h, w = src_hw
    th, tw = dst_hw
    if not letterbox:
        return th, tw, 0, 0
    r = min(th / h, tw / w)
    new_h = min(th, max(1, int(h * r + 0.5)))
    new_w = min(tw, max(1, int(w * r + 0.5)))
    return new_h, new_w, (th - new_h) // 2, (tw - new_w) // 2


def _check_images(images) -> None:
    if len(images) == 0:
        raise ValueError("letterbox_normalize: empty batch")
    for i, img in enumerate(images):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"letterbox_normalize: image {i} must be uint8 HxWx3, got {img.dtype} {img.shape}")
        if img.shape[0] < 1 or img.shape[1] < 1:
            raise ValueError(f"letterbox_normalize: image {i} is empty ({img.shape})")


def _affine(mean, std, pad_value) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, pad) with normalized = v * a + b per channel, and the normalized pad value."""
    std64 = np.asarray(std, np.float64)
    a = (1.0 / std64).astype(np.float32)
    b = (-np.asarray(mean, np.float64) / std64).astype(np.float32)
    return a, b, (pad_value * a + b).astype(np.float32)


# ------------------------------------------------------------------------------ NumPy reference
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
    dtype=np.float32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NumPy reference. Returns (batch [B,3,H,W], scale [B,2] (sx, sy), pad [B,2] (left, top))."""
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
        src = (img[..., ::-1] if bgr_to_rgb else img).astype(np.float64)
        fx_, fy_ = fx[None, :, None], fy[:, None, None]
        top_row = src[y0][:, x0] * (1 - fx_) + src[y0][:, x1] * fx_
        bot_row = src[y1][:, x0] * (1 - fx_) + src[y1][:, x1] * fx_
        canvas = np.full((th, tw, 3), pad_value, np.float64)
        canvas[top : top + new_h, left : left + new_w] = top_row * (1 - fy_) + bot_row * fy_
        out[n] = ((canvas - mean_a) / std_a).transpose(2, 0, 1)
        scales[n] = (new_w / w, new_h / h)
        pads[n] = (left, top)
    return out.astype(dtype), scales, pads


# ------------------------------------------------------------------------------ CPU (Numba)
@njit(cache=True)
def _taps(dst_size, src_size):
    """First tap, second tap (as element offsets x3 for interleaved rows) and weight per output."""
    scale = src_size / dst_size
    i0 = np.empty(dst_size, np.uint32)
    i1 = np.empty(dst_size, np.uint32)
    w = np.empty(dst_size, np.float32)
    exact = True
    for d in range(dst_size):
        f = (d + 0.5) * scale - 0.5
        s = int(np.floor(f))
        f -= s
        if s < 0:
            s, f = 0, 0.0
        if s >= src_size - 1:
            s, f = src_size - 1, 0.0
        i0[d] = s
        i1[d] = min(s + 1, src_size - 1)
        w[d] = f
        exact = exact and f == 0.0
    return i0, i1, w, exact


@njit(inline="always", fastmath=True)
def _resize_row(r0, r1, fy, xo0, xo1, wx, x_exact, ch, ac, bc, dst):
    n = dst.size
    if fy == 0 and x_exact:
        for x in range(n):
            dst[x] = np.float32(r0[xo0[x] + ch]) * ac + bc
    elif fy == 0:
        for x in range(n):
            p = np.float32(r0[xo0[x] + ch])
            dst[x] = (p + wx[x] * (np.float32(r0[xo1[x] + ch]) - p)) * ac + bc
    else:
        for x in range(n):
            p = np.float32(r0[xo0[x] + ch])
            t = p + wx[x] * (np.float32(r0[xo1[x] + ch]) - p)
            q = np.float32(r1[xo0[x] + ch])
            u = q + wx[x] * (np.float32(r1[xo1[x] + ch]) - q)
            dst[x] = (t + fy * (u - t)) * ac + bc


@njit(parallel=True, cache=True, fastmath=True)
def _letterbox_f32(img, out, new_h, new_w, top, left, a, b, pad, swap):
    src_h, src_w = img.shape[0], img.shape[1]
    flat = img.reshape(-1)
    row_len = src_w * 3
    out_h = out.shape[1]
    x0, x1, wx, x_exact = _taps(new_w, src_w)
    y0, y1, wy, _ = _taps(new_h, src_h)
    xo0, xo1 = x0 * np.uint32(3), x1 * np.uint32(3)
    for y in prange(out_h):
        yy = y - top
        if yy < 0 or yy >= new_h:
            for c in range(3):
                out[c, y, :] = pad[c]
            continue
        r0 = flat[y0[yy] * row_len : (y0[yy] + 1) * row_len]
        r1 = flat[y1[yy] * row_len : (y1[yy] + 1) * row_len]
        for c in range(3):
            row = out[c, y]
            row[:left] = pad[c]
            row[left + new_w :] = pad[c]
            ch = np.uint32(2 - c if swap else c)
            _resize_row(r0, r1, wy[yy], xo0, xo1, wx, x_exact, ch, a[c], b[c], row[left : left + new_w])


@njit(parallel=True, cache=True, fastmath=True)
def _letterbox_f16(img, out16, new_h, new_w, top, left, a, b, pad, swap, n_chunks):
    """As _letterbox_f32, each row computed in float32 then stored as float16 bits (uint16)."""
    src_h, src_w = img.shape[0], img.shape[1]
    flat = img.reshape(-1)
    row_len = src_w * 3
    out_h, out_w = out16.shape[1], out16.shape[2]
    x0, x1, wx, x_exact = _taps(new_w, src_w)
    y0, y1, wy, _ = _taps(new_h, src_h)
    xo0, xo1 = x0 * np.uint32(3), x1 * np.uint32(3)
    per = (out_h + n_chunks - 1) // n_chunks
    for k in prange(n_chunks):
        buf = np.empty(out_w, np.float32)
        bits = buf.view(np.uint32)
        for y in range(k * per, min(out_h, (k + 1) * per)):
            yy = y - top
            for c in range(3):
                buf[:] = pad[c]
                if 0 <= yy < new_h:
                    r0 = flat[y0[yy] * row_len : (y0[yy] + 1) * row_len]
                    r1 = flat[y1[yy] * row_len : (y1[yy] + 1) * row_len]
                    ch = np.uint32(2 - c if swap else c)
                    _resize_row(r0, r1, wy[yy], xo0, xo1, wx, x_exact, ch, a[c], b[c], buf[left : left + new_w])
                dst = out16[c, y]
                for x in range(out_w):
                    dst[x] = f32_bits_to_f16_bits(bits[x])


def _letterbox_on_device(imgs, out_hw, a, b, pad, swap, letterbox, dtype, out):
    d_imgs = as_device_array(imgs)
    if d_imgs.ndim != 4 or d_imgs.shape[3] != 3 or d_imgs.dtype != np.uint8 or d_imgs.shape[0] == 0:
        raise ValueError(f"letterbox_normalize: device images must be uint8 [B,H,W,3], got {d_imgs.shape}")
    n, h, w = d_imgs.shape[:3]
    th, tw = out_hw
    new_h, new_w, top, left = letterbox_geometry((h, w), out_hw, letterbox)
    if out is None:
        out = device_empty(imgs, (n, 3, th, tw), dtype)
    letterbox_on_device(d_imgs, out, (new_h, new_w, top, left), a, b, pad, swap)
    scales = np.tile([new_w / w, new_h / h], (n, 1))
    pads = np.tile([left, top], (n, 1)).astype(np.int64)
    return out, scales, pads


# ------------------------------------------------------------------------------ public
def letterbox_normalize(
    images: Sequence[np.ndarray] | np.ndarray,
    out_hw: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    bgr_to_rgb: bool = True,
    letterbox: bool = True,
    pad_value: float = 114.0,
    dtype=np.float32,
    out=None,
) -> tuple:
    """Resize (letterbox or plain) + normalize + channel swap + HWC->NCHW, fused.

    `images`: a sequence of uint8 HxWx3 host arrays (sizes may differ), a uint8 [B,H,W,3] host
    array, or a uint8 [B,H,W,3] CUDA array (torch CUDA tensor or Numba device array): then the
    work runs on the GPU and `out` is a device array.
    `mean`/`std`: per output (RGB if swapped) channel, on the 0..255 scale. `dtype`: float32 or
    float16. Returns (batch [B,3,H,W], scale [B,2] as (sx, sy), pad [B,2] as (left, top)); an
    original-image coordinate is (x - left) / sx.
    """
    dtype = np.dtype(dtype)
    if dtype not in OUT_DTYPES:
        raise ValueError(f"letterbox_normalize: dtype must be float32 or float16, got {dtype}")
    a, b, pad = _affine(mean, std, pad_value)
    if on_device(images):
        return _letterbox_on_device(images, out_hw, a, b, pad, bgr_to_rgb, letterbox, dtype, out)
    _check_images(images)
    th, tw = out_hw
    n = len(images)
    if out is None:
        out = np.empty((n, 3, th, tw), dtype)
    elif out.shape != (n, 3, th, tw) or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"letterbox_normalize: out must be C-contiguous {dtype} {(n, 3, th, tw)}")
    scales = np.empty((n, 2), np.float64)
    pads = np.empty((n, 2), np.int64)
    target = out.view(np.uint16) if dtype == np.float16 else out
    n_chunks = min(th, 4 * numba.get_num_threads())
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        new_h, new_w, top, left = letterbox_geometry((h, w), out_hw, letterbox)
        args = (np.ascontiguousarray(img), target[i], new_h, new_w, top, left, a, b, pad, bgr_to_rgb)
        if dtype == np.float16:
            _letterbox_f16(*args, n_chunks)
        else:
            _letterbox_f32(*args)
        scales[i] = (new_w / w, new_h / h)
        pads[i] = (left, top)
    return out, scales, pads
