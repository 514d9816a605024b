"""seg_argmax on the GPU (the CPU kernel, the NumPy reference and the input checks are in
kernels/vision/segment.py, which calls `seg_argmax_on_device`).

Under Numba's CUDA simulator (tests/cuda, CI's only check of this code) the kernel runs as it is, at
the GPU's launch shape ((32, 8) threads a block), on small masks, resized or not: results only. What
only a GPU shows: timing and coalescing, and numba-cuda's compilation and typing (the simulator runs
the Python source: math.floor typed as a float broke this kernel's compile on an H100)."""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from kernels.common.device import as_device_array, launch_stream


@cuda.jit(device=True)
def _better(v, best):
    """v beats best: larger, or best is NaN and v is not (kernels/vision/segment.py's rule)."""
    return v > best or (best != best and v == v)


SEG_PIXELS = 4  # output pixels per thread, 32 apart: a warp's loads stay coalesced, and each thread
# has SEG_PIXELS independent loads in flight per class plane instead of one


@cuda.jit
def _seg_argmax_cuda(logits, mask):
    """Blocks of (32, 8) threads over 128 x 8 output pixels; each thread takes SEG_PIXELS pixels of
    a row, 32 apart, and streams the class planes once (one coalesced load per plane and pixel),
    resampling bilinearly when the mask is not the logits' size."""
    b = cuda.blockIdx.z
    y = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    x_first = cuda.blockIdx.x * (32 * SEG_PIXELS) + cuda.threadIdx.x
    n_c, n_h, n_w = logits.shape[1], logits.shape[2], logits.shape[3]
    out_h, out_w = mask.shape[1], mask.shape[2]
    if y >= out_h:
        return
    same = out_h == n_h and out_w == n_w
    fy = max((y + 0.5) * (n_h / out_h) - 0.5, 0.0)
    sy = min(int(math.floor(fy)), n_h - 1)  # noqa: RUF046 (numba-cuda types math.floor as float)
    fy = np.float32(fy - sy)
    sy1 = min(sy + 1, n_h - 1)
    best = cuda.local.array(SEG_PIXELS, np.float32)
    arg = cuda.local.array(SEG_PIXELS, np.int32)
    sx = cuda.local.array(SEG_PIXELS, np.int32)
    sx1 = cuda.local.array(SEG_PIXELS, np.int32)
    fx = cuda.local.array(SEG_PIXELS, np.float32)
    for j in range(SEG_PIXELS):
        best[j] = np.nan
        arg[j] = 0
        f = max((x_first + 32 * j + 0.5) * (n_w / out_w) - 0.5, 0.0)
        s = min(int(math.floor(f)), n_w - 1)  # noqa: RUF046
        sx[j] = s
        sx1[j] = min(s + 1, n_w - 1)
        fx[j] = np.float32(f - s)
    for c in range(n_c):
        for j in range(SEG_PIXELS):
            x = x_first + 32 * j
            if x < out_w:
                if same:
                    v = np.float32(logits[b, c, y, x])
                else:
                    a = sx[j]
                    a1 = sx1[j]
                    w = fx[j]
                    t = logits[b, c, sy, a] * (np.float32(1) - w) + logits[b, c, sy, a1] * w
                    u = logits[b, c, sy1, a] * (np.float32(1) - w) + logits[b, c, sy1, a1] * w
                    v = np.float32(t * (np.float32(1) - fy) + u * fy)
                if _better(v, best[j]):
                    best[j] = v
                    arg[j] = c
    for j in range(SEG_PIXELS):
        x = x_first + 32 * j
        if x < out_w:
            mask[b, y, x] = arg[j]


def seg_argmax_on_device(logits, mask) -> None:
    """Launch the kernel on `logits`' stream: float logits [B,C,h,w] on the device into the uint8
    device mask [B,H,W] (resampled bilinearly when H, W differ from h, w)."""
    d, d_mask = as_device_array(logits), as_device_array(mask)
    h, w = d_mask.shape[1], d_mask.shape[2]
    grid = (-(-w // (32 * SEG_PIXELS)), -(-h // 8), d.shape[0])
    _seg_argmax_cuda[grid, (32, 8, 1), launch_stream(logits)](d, d_mask)
