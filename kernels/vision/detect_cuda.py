"""Class-aware NMS on the GPU: rank, per-class suppression and the result in score order, all on the
device (the CPU kernels, the NumPy references and the rules are in kernels/vision/detect.py, whose
`batched_nms` calls `batched_nms_cuda` for device arrays).

Under Numba's CUDA simulator (tests/cuda, CI's only check of this code) the three kernels run as
they are, barriers included, at the GPU's launch shapes (NMS_THREADS = 128 there too), on small
inputs: results only, a Python thread per CUDA thread. What only a GPU shows: timing, occupancy,
memory under real concurrency (a class block's suppression flags written and read by its threads),
and numba-cuda's compilation and typing (the simulator runs the Python source)."""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from kernels.common.device import as_device_array, device_empty, device_zeros, launch_1d, launch_stream, to_host

NMS_THREADS = 128  # threads per class block, read at launch; the suppression loop strides over blockDim


@cuda.jit(device=True)
def _ahead_dev(sj, j, si, i):
    """Box j comes before box i by score: higher first, NaN last, ties to the lower index."""
    if math.isnan(si):
        return not math.isnan(sj) or j < i
    if math.isnan(sj):
        return False
    return sj > si or (sj == si and j < i)


@cuda.jit
def _rank_cuda(scores, classes, by_class, by_score):
    """Two orders at once, each box counting who comes before it: by (class, score) for the
    per-class NMS and by score for the result. O(n^2) comparisons, all on the device, no sort."""
    i = cuda.grid(1)
    n = scores.shape[0]
    if i >= n:
        return
    si, ci = scores[i], classes[i]
    rc = 0
    rs = 0
    for j in range(n):
        ahead = _ahead_dev(scores[j], j, si, i)
        cj = classes[j]
        rs += ahead
        rc += cj < ci or (cj == ci and ahead)
    by_class[rc] = i
    by_score[rs] = i


@cuda.jit
def _nms_classes_cuda(boxes, classes, by_class, iou_thres, removed, keep):
    """Block p works only if sorted position p starts a class: it walks that class's boxes best
    first; a kept one's threads flag the later boxes of the class it overlaps (IoU > threshold)."""
    p = cuda.blockIdx.x
    n = by_class.shape[0]
    c = classes[by_class[p]]
    if p > 0 and classes[by_class[p - 1]] == c:
        return
    end = p + 1
    while end < n and classes[by_class[end]] == c:
        end += 1
    t = cuda.threadIdx.x
    for q in range(p, end):
        cuda.syncthreads()  # the flags written for earlier boxes are visible from here
        if removed[q]:
            continue
        i = by_class[q]
        if t == 0:
            keep[i] = 1
        ax1, ay1, ax2, ay2 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        aa = (ax2 - ax1) * (ay2 - ay1)
        for r in range(q + 1 + t, end, cuda.blockDim.x):
            if removed[r]:
                continue
            j = by_class[r]
            w = max(np.float32(0), min(ax2, boxes[j, 2]) - max(ax1, boxes[j, 0]))
            h = max(np.float32(0), min(ay2, boxes[j, 3]) - max(ay1, boxes[j, 1]))
            inter = w * h
            ab = (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1])
            if inter / (aa + ab - inter) > iou_thres:
                removed[r] = 1


@cuda.jit
def _kept_by_score_cuda(by_score, keep, out):
    """out[rank] = the box at that score rank if kept, else -1 (compacted on the host)."""
    p = cuda.grid(1)
    if p < by_score.shape[0]:
        i = by_score[p]
        out[p] = i if keep[i] else -1


def batched_nms_cuda(boxes, scores, classes, iou_thres, max_keep):
    """Everything on the device (rank, per-class NMS, result in score order), one copy to the host
    at the end: no host round trip in between, and every launch on the inputs' stream."""
    if np.dtype(as_device_array(classes).dtype).kind == "f":  # float ids (3.0): integers, checked on the host
        h = to_host(classes)
        if not np.isfinite(h).all():
            raise ValueError("batched_nms: classes must be finite class ids, got NaN or inf")
        classes = cuda.to_device(h.astype(np.int64))
    d_boxes, d_scores, d_cls = (as_device_array(x) for x in (boxes, scores, classes))
    n = d_scores.shape[0]
    if d_boxes.shape != (n, 4) or d_cls.shape != (n,):
        shapes = f"{d_boxes.shape}, {d_scores.shape}, {d_cls.shape}"
        raise ValueError(f"batched_nms: need boxes [N,4], scores [N], classes [N]; got {shapes}")
    if n == 0:
        return np.zeros(0, np.int64)
    stream = launch_stream(scores)
    by_class, by_score, kept = (device_empty(scores, (n,), np.int64) for _ in range(3))
    removed, keep = device_zeros(scores, (n,), np.uint8), device_zeros(scores, (n,), np.uint8)
    d_by_class, d_by_score, d_kept = (as_device_array(x) for x in (by_class, by_score, kept))
    blocks, threads = launch_1d(n)
    _rank_cuda[blocks, threads, stream](d_scores, d_cls, d_by_class, d_by_score)
    _nms_classes_cuda[n, NMS_THREADS, stream](
        d_boxes, d_cls, d_by_class, iou_thres, as_device_array(removed), as_device_array(keep)
    )
    _kept_by_score_cuda[blocks, threads, stream](d_by_score, as_device_array(keep), d_kept)
    h = to_host(kept)
    return h[h >= 0][:max_keep]
