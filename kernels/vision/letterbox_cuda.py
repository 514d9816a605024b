"""letterbox_normalize on the GPU: one thread per output pixel (the CPU kernel and the rules are in
kernels/vision/letterbox.py, which checks the inputs and calls `letterbox_on_device`).

Under Numba's CUDA simulator (tests/cuda, CI's only check of this code) the kernel runs as it is, at
the GPU's launch shape ((32, 8) threads a block), on small images, fp32 and fp16, NCHW and an
NHWC-strided output: results only. What only a GPU shows: timing (copy bandwidth, the launch and
argument overhead), and numba-cuda's compilation and typing (the simulator runs the Python source)."""

from __future__ import annotations

import numpy as np
from numba import cuda

from kernels.common.device import as_device_array, launch_stream


@cuda.jit
def _letterbox_cuda(imgs, out, new_h, new_w, top, left, a, b, pad, swap):
    """imgs uint8 [B,H,W,3] on the device; out [B,3,oh,ow] float32 or float16; one thread per pixel."""
    x, y, n = cuda.grid(3)
    out_h, out_w = out.shape[2], out.shape[3]
    if x >= out_w or y >= out_h or n >= out.shape[0]:
        return
    yy = y - top
    xx = x - left
    if yy < 0 or yy >= new_h or xx < 0 or xx >= new_w:
        for c in range(3):
            out[n, c, y, x] = pad[c]
        return
    src_h, src_w = imgs.shape[1], imgs.shape[2]
    fx = (xx + 0.5) * (src_w / new_w) - 0.5
    sx = int(fx // 1.0)
    fx -= sx
    if sx < 0:
        sx, fx = 0, 0.0
    if sx >= src_w - 1:
        sx, fx = src_w - 1, 0.0
    fy = (yy + 0.5) * (src_h / new_h) - 0.5
    sy = int(fy // 1.0)
    fy -= sy
    if sy < 0:
        sy, fy = 0, 0.0
    if sy >= src_h - 1:
        sy, fy = src_h - 1, 0.0
    sx1 = min(sx + 1, src_w - 1)
    sy1 = min(sy + 1, src_h - 1)
    wx = np.float32(fx)
    wy = np.float32(fy)
    for c in range(3):
        ch = 2 - c if swap else c
        p = np.float32(imgs[n, sy, sx, ch])
        t = p + wx * (np.float32(imgs[n, sy, sx1, ch]) - p)
        q = np.float32(imgs[n, sy1, sx, ch])
        u = q + wx * (np.float32(imgs[n, sy1, sx1, ch]) - q)
        out[n, c, y, x] = (t + wy * (u - t)) * a[c] + b[c]


_CONSTANTS: dict = {}


def _device_constants(a: np.ndarray, b: np.ndarray, pad: np.ndarray) -> tuple:
    """The per-channel constants on the GPU, copied once per distinct (a, b, pad), not per call."""
    key = (a.tobytes(), b.tobytes(), pad.tobytes(), getattr(cuda.get_current_device(), "id", 0))
    if key not in _CONSTANTS:
        _CONSTANTS[key] = (cuda.to_device(a), cuda.to_device(b), cuda.to_device(pad))
    return _CONSTANTS[key]


def letterbox_on_device(imgs, out, geometry: tuple[int, int, int, int], a, b, pad, swap: bool) -> None:
    """Launch the kernel on `imgs`' stream: uint8 [B,H,W,3] device images into the device batch
    `out` [B,3,th,tw]; `geometry` (new_h, new_w, top, left) from `letterbox_geometry`; a, b, pad
    the per-channel affine (out = v * a + b) and pad values as float32 [3] host arrays."""
    d_imgs, d_out = as_device_array(imgs), as_device_array(out)
    n, th, tw = d_out.shape[0], d_out.shape[2], d_out.shape[3]
    new_h, new_w, top, left = geometry
    threads = (32, 8, 1)
    blocks = ((tw + 31) // 32, (th + 7) // 8, n)
    _letterbox_cuda[blocks, threads, launch_stream(imgs)](
        d_imgs,
        d_out,
        new_h,
        new_w,
        top,
        left,
        *_device_constants(a, b, pad),
        swap,
    )
