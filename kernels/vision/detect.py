"""Detection post-processing: class-aware NMS and decoding of the detector's raw head.

`batched_nms(boxes, scores, classes, iou_thres)` keeps what torchvision.ops.batched_nms keeps, in
the same order (score descending; equal scores: lower index first). A box is dropped when its IoU
with a kept box of the same class is > iou_thres, IoU computed in float32 in torchvision's order
(inter / (area_i + area_j - inter)); a zero-area pair has NaN IoU and suppresses nothing.

Why it is fast: class-aware suppression decomposes exactly by class, so candidates are grouped by
class (stable, so each group stays in score order) and greedy NMS runs inside each group; no pair
of boxes of different classes is ever compared, and a class stops once it has `max_det` kept.

`detect_postprocess(head, anchors, ...)` goes from the raw head [B, N, 4 + C] (see
models/detector.py) to boxes in original-image coordinates: best class per anchor, score =
sigmoid(logit) > conf_thres, ltrb decode (distances clamped at 0, times the stride), the
`max_candidates` best, class-aware NMS, at most `max_det` kept, mapped back through the letterbox
((x - left) / sx) and clipped to the image. NaN logits or boxes never become detections.
Output: dets float32 [B, max_det, 6] = (x1, y1, x2, y2, score, class), and counts int64 [B].

`yolo_postprocess(out, ...)` does the same from the common YOLOv8/YOLO11 export layout
[B, 4 + C, A]: rows 0..3 are (cx, cy, w, h) in input pixels, rows 4.. class scores already through
a sigmoid; score = best class score > conf_thres. Same candidates cap, NMS and mapping back.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from kernels.common.device import on_device
from kernels.common.sort import argsort_desc
from kernels.vision.detect_cuda import batched_nms_cuda


# ------------------------------------------------------------------------------ NumPy reference
def _iou_suppresses(bi, bj, iou_thres) -> bool:
    bi, bj = bi.astype(np.float32), bj.astype(np.float32)
    w = max(np.float32(0), min(bi[2], bj[2]) - max(bi[0], bj[0]))
    h = max(np.float32(0), min(bi[3], bj[3]) - max(bi[1], bj[1]))
    inter = np.float32(w * h)
    ai = np.float32((bi[2] - bi[0]) * (bi[3] - bi[1]))
    aj = np.float32((bj[2] - bj[0]) * (bj[3] - bj[1]))
    with np.errstate(invalid="ignore", divide="ignore"):
        return bool(np.float32(inter / np.float32(ai + aj - inter)) > iou_thres)


def batched_nms_ref(boxes, scores, classes, iou_thres, max_det=None) -> np.ndarray:
    """NumPy reference: plain greedy loop over all boxes in score order."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    removed = np.zeros(len(order), bool)
    keep: list[int] = []
    for a in range(len(order)):
        if removed[a]:
            continue
        i = order[a]
        keep.append(i)
        if max_det is not None and len(keep) == max_det:
            break
        for b in range(a + 1, len(order)):
            j = order[b]
            if not removed[b] and classes[j] == classes[i] and _iou_suppresses(boxes[i], boxes[j], iou_thres):
                removed[b] = True
    return np.asarray(keep, np.int64)


def _logit(p: float) -> float:
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))


def _decode_ref(head_b, anchors):
    logits = head_b[:, 4:].astype(np.float32)
    safe = np.where(np.isnan(logits), -np.inf, logits)
    cls = safe.argmax(1)
    best = safe[np.arange(len(cls)), cls]
    d = np.maximum(head_b[:, :4].astype(np.float32), 0) * anchors[:, 2:3]
    boxes = np.stack(
        [anchors[:, 0] - d[:, 0], anchors[:, 1] - d[:, 1], anchors[:, 0] + d[:, 2], anchors[:, 1] + d[:, 3]],
        1,
    ).astype(np.float32)
    score = (1.0 / (1.0 + np.exp(-best.astype(np.float64)))).astype(np.float32)
    return boxes, score, cls, best


def detect_postprocess_ref(
    head, anchors, scales, pads, orig_hw, conf_thres=0.25, iou_thres=0.45, max_det=300, max_candidates=30000
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy reference (decode, threshold, batched_nms_ref, map back)."""
    _check(head, anchors, scales, pads, orig_hw)
    n_b = head.shape[0]
    dets = np.zeros((n_b, max_det, 6), np.float32)
    counts = np.zeros(n_b, np.int64)
    for b in range(n_b):
        boxes, score, cls, best = _decode_ref(head[b], anchors)
        ok = (best > _logit(conf_thres)) & ~np.isnan(boxes).any(1)
        cand = np.nonzero(ok)[0]
        cand = cand[np.argsort(-score[cand], kind="stable")][:max_candidates]
        keep = cand[batched_nms_ref(boxes[cand], score[cand], cls[cand], iou_thres, max_det)]
        _map_back_ref(dets[b], boxes[keep], score[keep], cls[keep], scales[b], pads[b], orig_hw[b])
        counts[b] = len(keep)
    return dets, counts


def yolo_postprocess_ref(
    out, scales, pads, orig_hw, conf_thres=0.25, iou_thres=0.45, max_det=300, max_candidates=30000
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy reference for the YOLOv8 layout [B, 4 + C, A] (decode, threshold, batched_nms_ref, map back)."""
    _check_yolo(out, scales, pads, orig_hw)
    n_b = out.shape[0]
    dets = np.zeros((n_b, max_det, 6), np.float32)
    counts = np.zeros(n_b, np.int64)
    for b in range(n_b):
        o = out[b].astype(np.float32)
        scores = np.where(np.isnan(o[4:]), -np.inf, o[4:])
        cls = scores.argmax(0)
        score = scores[cls, np.arange(o.shape[1])]
        cx, cy, w, h = o[0], o[1], o[2], o[3]
        half_w, half_h = w * np.float32(0.5), h * np.float32(0.5)
        boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], 1).astype(np.float32)
        ok = (score > np.float32(conf_thres)) & ~np.isnan(boxes).any(1)
        cand = np.nonzero(ok)[0]
        cand = cand[np.argsort(-score[cand], kind="stable")][:max_candidates]
        keep = cand[batched_nms_ref(boxes[cand], score[cand], cls[cand], iou_thres, max_det)]
        _map_back_ref(dets[b], boxes[keep], score[keep], cls[keep], scales[b], pads[b], orig_hw[b])
        counts[b] = len(keep)
    return dets, counts


def _map_back_ref(dets_b, boxes, score, cls, scale, pad, orig) -> None:
    sx, sy = scale
    left, top = pad
    oh, ow = orig
    for n in range(len(boxes)):
        x1, y1, x2, y2 = boxes[n]
        dets_b[n] = (
            min(max((x1 - left) / sx, 0), ow),
            min(max((y1 - top) / sy, 0), oh),
            min(max((x2 - left) / sx, 0), ow),
            min(max((y2 - top) / sy, 0), oh),
            score[n],
            cls[n],
        )


# ------------------------------------------------------------------------------ CPU (Numba)
@njit(cache=True)
def _group_by_class(cls_o):
    """Stable permutation grouping equal classes, and each group's start (n appended)."""
    n = cls_o.size
    if n == 0:
        return np.empty(0, np.int64), np.zeros(1, np.int64)
    lo, hi = cls_o.min(), cls_o.max()
    if hi - lo < 1 << 20:  # counting sort
        count = np.zeros(hi - lo + 2, np.int64)
        for p in range(n):
            count[cls_o[p] - lo + 1] += 1
        for c in range(hi - lo + 1):
            count[c + 1] += count[c]
        by = np.empty(n, np.int64)
        for p in range(n):
            c = cls_o[p] - lo
            by[count[c]] = p
            count[c] += 1
    else:
        by = np.argsort(cls_o, kind="mergesort")
    n_groups = 1
    for k in range(1, n):
        n_groups += cls_o[by[k]] != cls_o[by[k - 1]]
    starts = np.empty(n_groups + 1, np.int64)
    starts[0] = 0
    g = 1
    for k in range(1, n):
        if cls_o[by[k]] != cls_o[by[k - 1]]:
            starts[g] = k
            g += 1
    starts[n_groups] = n
    return by, starts


@njit(cache=True)
def _prepare(boxes, cls, order):
    """Group candidates by class; their boxes and areas gathered in grouped order."""
    n = order.size
    cls_o = np.empty(n, np.int64)
    for p in range(n):
        cls_o[p] = cls[order[p]]
    by, starts = _group_by_class(cls_o)
    xy = np.empty((5, n), np.float32)  # x1, y1, x2, y2, area
    for k in range(n):
        i = order[by[k]]
        xy[0, k], xy[1, k], xy[2, k], xy[3, k] = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        xy[4, k] = (xy[2, k] - xy[0, k]) * (xy[3, k] - xy[1, k])
    return by, starts, xy


@njit(inline="always", error_model="numpy")
def _nms_group(xy, by, start, end, iou_thres, max_keep, keep, removed):
    x1, y1, x2, y2, area = xy[0], xy[1], xy[2], xy[3], xy[4]
    kept = 0
    for a in range(start, end):
        if removed[a]:
            continue
        keep[by[a]] = True
        kept += 1
        if kept == max_keep:
            break
        ax1, ay1, ax2, ay2, aa = x1[a], y1[a], x2[a], y2[a], area[a]
        for b in range(a + 1, end):  # branch-free so that it vectorizes
            w = max(np.float32(0), min(ax2, x2[b]) - max(ax1, x1[b]))
            h = max(np.float32(0), min(ay2, y2[b]) - max(ay1, y1[b]))
            inter = w * h
            removed[b] |= inter / (aa + area[b] - inter) > iou_thres


@njit(cache=True, error_model="numpy")
def _nms_sorted(boxes, cls, order, iou_thres, max_keep):
    """Class-aware greedy NMS over candidates `order` (already in score order), one thread.

    Returns a bool mask over positions of `order`: True where the candidate is kept.
    """
    by, starts, xy = _prepare(boxes, cls, order)
    keep = np.zeros(order.size, np.bool_)
    removed = np.zeros(order.size, np.bool_)
    for g in range(starts.size - 1):
        _nms_group(xy, by, starts[g], starts[g + 1], iou_thres, max_keep, keep, removed)
    return keep


@njit(parallel=True, cache=True, error_model="numpy")
def _nms_sorted_parallel(boxes, cls, order, iou_thres, max_keep):
    """As _nms_sorted, the classes (which never interact) spread over threads."""
    by, starts, xy = _prepare(boxes, cls, order)
    keep = np.zeros(order.size, np.bool_)
    removed = np.zeros(order.size, np.bool_)
    for g in prange(starts.size - 1):
        _nms_group(xy, by, starts[g], starts[g + 1], iou_thres, max_keep, keep, removed)
    return keep


@njit(cache=True, error_model="numpy")
def _batched_nms(boxes, scores, cls, iou_thres, max_keep):
    order = argsort_desc(scores)
    keep = _nms_sorted_parallel(boxes, cls, order, iou_thres, max_keep)
    out = np.empty(min(max_keep, order.size), np.int64)
    n = 0
    for p in range(order.size):
        if keep[p]:
            out[n] = order[p]
            n += 1
            if n == max_keep:
                break
    return out[:n]


@njit(parallel=True, cache=True, error_model="numpy")
def _detect(head, anchors, scales, pads, orig_hw, logit_thres, iou_thres, max_det, max_cand, dets, counts, n_cand):
    n_b, n_a, n_col = head.shape
    for b in prange(n_b):
        cls = np.empty(n_a, np.int64)
        score = np.empty(n_a, np.float32)
        boxes = np.empty((n_a, 4), np.float32)
        cand = np.empty(n_a, np.int64)
        n_ok = 0
        for a in range(n_a):
            best, bc = -np.inf, 0
            for c in range(4, n_col):
                v = head[b, a, c]
                if v > best:
                    best, bc = v, c - 4
            if not best > logit_thres:
                continue
            s = anchors[a, 2]
            x1 = anchors[a, 0] - max(head[b, a, 0], np.float32(0)) * s
            y1 = anchors[a, 1] - max(head[b, a, 1], np.float32(0)) * s
            x2 = anchors[a, 0] + max(head[b, a, 2], np.float32(0)) * s
            y2 = anchors[a, 1] + max(head[b, a, 3], np.float32(0)) * s
            if np.isnan(x1) or np.isnan(y1) or np.isnan(x2) or np.isnan(y2):
                continue
            boxes[a, 0], boxes[a, 1], boxes[a, 2], boxes[a, 3] = x1, y1, x2, y2
            cls[a] = bc
            score[a] = np.float32(1.0 / (1.0 + np.exp(-np.float64(best))))
            cand[n_ok] = a
            n_ok += 1
        n_cand[b], counts[b] = _finish_image(
            boxes, cls, score, cand[:n_ok], scales[b], pads[b], orig_hw[b], iou_thres, max_det, max_cand, dets[b]
        )


@njit(inline="always", error_model="numpy")
def _finish_image(boxes, cls, score, cand, scale, pad, orig, iou_thres, max_det, max_cand, dets_b):
    """Candidates `cand` of one image -> the best `max_cand`, class-aware NMS, at most `max_det` kept,
    mapped back through the letterbox into `dets_b`. Returns (candidates, kept)."""
    order = cand[argsort_desc(score[cand])][:max_cand]
    keep = _nms_sorted(boxes, cls, order, iou_thres, max_det)
    sx, sy = scale[0], scale[1]
    left, top = pad[0], pad[1]
    oh, ow = orig[0], orig[1]
    n = 0
    for p in range(order.size):
        if not keep[p]:
            continue
        i = order[p]
        dets_b[n, 0] = min(max((boxes[i, 0] - left) / sx, 0.0), ow)
        dets_b[n, 1] = min(max((boxes[i, 1] - top) / sy, 0.0), oh)
        dets_b[n, 2] = min(max((boxes[i, 2] - left) / sx, 0.0), ow)
        dets_b[n, 3] = min(max((boxes[i, 3] - top) / sy, 0.0), oh)
        dets_b[n, 4] = score[i]
        dets_b[n, 5] = cls[i]
        n += 1
        if n == max_det:
            break
    return order.size, n


@njit(parallel=True, cache=True, error_model="numpy")
def _detect_yolo(out, scales, pads, orig_hw, conf_thres, iou_thres, max_det, max_cand, dets, counts, n_cand):
    n_b, n_row, n_a = out.shape
    for b in prange(n_b):
        o = out[b]
        best = np.full(n_a, -np.inf, np.float32)
        cls = np.zeros(n_a, np.int64)
        for c in range(4, n_row):  # row by row: contiguous reads, the anchor loop vectorizes
            row = o[c]
            for a in range(n_a):
                v = row[a]
                if v > best[a]:
                    best[a], cls[a] = v, c - 4
        boxes = np.empty((n_a, 4), np.float32)
        cand = np.empty(n_a, np.int64)
        n_ok = 0
        for a in range(n_a):
            if not best[a] > conf_thres:
                continue
            half_w, half_h = o[2, a] * np.float32(0.5), o[3, a] * np.float32(0.5)
            x1, y1, x2, y2 = o[0, a] - half_w, o[1, a] - half_h, o[0, a] + half_w, o[1, a] + half_h
            if np.isnan(x1) or np.isnan(y1) or np.isnan(x2) or np.isnan(y2):
                continue
            boxes[a, 0], boxes[a, 1], boxes[a, 2], boxes[a, 3] = x1, y1, x2, y2
            cand[n_ok] = a
            n_ok += 1
        n_cand[b], counts[b] = _finish_image(
            boxes, cls, best, cand[:n_ok], scales[b], pads[b], orig_hw[b], iou_thres, max_det, max_cand, dets[b]
        )


# ------------------------------------------------------------------------------ public
def batched_nms(boxes, scores, classes, iou_thres: float, max_det: int | None = None) -> np.ndarray:
    """Indices kept by class-aware NMS, best score first (as torchvision.ops.batched_nms).

    `boxes` [N, 4] (x1, y1, x2, y2) float32, `scores` [N] float32, `classes` [N] int. Host arrays
    run on the CPU; CUDA arrays (torch CUDA tensors, Numba device arrays) on the GPU. Returns int64
    indices on the host.
    """
    max_keep = int(max_det) if max_det is not None else 2**62
    if on_device(scores):
        return batched_nms_cuda(boxes, scores, classes, float(iou_thres), max_keep)
    boxes = np.ascontiguousarray(boxes, np.float32)
    scores = np.ascontiguousarray(scores, np.float32)
    if np.asarray(classes).dtype.kind == "f" and not np.isfinite(classes).all():
        raise ValueError("batched_nms: classes must be finite class ids, got NaN or inf")
    classes = np.ascontiguousarray(classes, np.int64)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (boxes.shape[0],) or classes.shape != scores.shape:
        raise ValueError(f"batched_nms: need boxes [N,4], scores [N], classes [N]; got {boxes.shape}, {scores.shape}")
    return _batched_nms(boxes, scores, classes, float(iou_thres), max_keep)


def _check(head: np.ndarray, anchors: np.ndarray, scales, pads, orig_hw) -> None:
    if head.ndim != 3 or head.shape[0] == 0 or head.shape[2] < 5:
        raise ValueError(f"detect_postprocess: head must be [B, N, 4 + C], got {head.shape}")
    if anchors.shape != (head.shape[1], 3):
        raise ValueError(f"detect_postprocess: anchors {anchors.shape} do not fit head {head.shape}")
    _check_meta("detect_postprocess", head.shape[0], scales, pads, orig_hw)


def _check_meta(fn: str, b: int, scales, pads, orig_hw) -> None:
    for name, a in (("scales", scales), ("pads", pads), ("orig_hw", orig_hw)):
        if np.shape(a) != (b, 2):
            raise ValueError(f"{fn}: {name} must be [{b}, 2], got {np.shape(a)}")


def _run(
    kernel, out: np.ndarray, lead: tuple, scales, pads, orig_hw, conf, iou_thres, max_det, max_candidates, stats
) -> tuple[np.ndarray, np.ndarray]:
    """Allocate the outputs, run a decoder kernel on the batch, report candidates if asked."""
    n_b = out.shape[0]
    dets = np.zeros((n_b, max_det, 6), np.float32)
    counts = np.zeros(n_b, np.int64)
    n_cand = np.zeros(n_b, np.int64)
    meta = (np.asarray(scales, np.float64), np.asarray(pads, np.float64), np.asarray(orig_hw, np.float64))
    kernel(out, *lead, *meta, conf, float(iou_thres), int(max_det), int(max_candidates), dets, counts, n_cand)
    if stats is not None:
        stats["candidates"] = n_cand
    return dets, counts


def detect_postprocess(
    head: np.ndarray,
    anchors: np.ndarray,
    scales: np.ndarray,
    pads: np.ndarray,
    orig_hw: np.ndarray,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    max_det: int = 300,
    max_candidates: int = 30000,
    stats: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode + threshold + class-aware NMS + map back, on the CPU; see the module docstring.

    `anchors` is `models.detector.anchor_points(h, w)`; `scales`/`pads` come from
    `letterbox_normalize`; `orig_hw` [B, 2] is each original image's (height, width).
    If `stats` is given, it receives the candidate count per image (the NMS workload).
    """
    _check(head, anchors, scales, pads, orig_hw)
    if max_det < 1:
        raise ValueError("detect_postprocess: max_det must be >= 1")
    head = np.ascontiguousarray(head, dtype=np.float32)
    lead = (np.ascontiguousarray(anchors, np.float32),)
    return _run(
        _detect, head, lead, scales, pads, orig_hw, _logit(conf_thres), iou_thres, max_det, max_candidates, stats
    )


def _check_yolo(out: np.ndarray, scales, pads, orig_hw) -> None:
    if out.ndim != 3 or out.shape[0] == 0 or out.shape[1] < 5:
        raise ValueError(f"yolo_postprocess: output must be [B, 4 + C, A], got {out.shape}")
    _check_meta("yolo_postprocess", out.shape[0], scales, pads, orig_hw)


def yolo_postprocess(
    out: np.ndarray,
    scales: np.ndarray,
    pads: np.ndarray,
    orig_hw: np.ndarray,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    max_det: int = 300,
    max_candidates: int = 30000,
    stats: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """As `detect_postprocess`, from the YOLOv8/YOLO11 export layout [B, 4 + C, A] (cx, cy, w, h in
    input pixels, sigmoid class scores); no anchors needed. On the CPU; see the module docstring."""
    _check_yolo(out, scales, pads, orig_hw)
    if max_det < 1:
        raise ValueError("yolo_postprocess: max_det must be >= 1")
    out = np.ascontiguousarray(out, dtype=np.float32)
    return _run(
        _detect_yolo, out, (), scales, pads, orig_hw, np.float32(conf_thres), iou_thres, max_det, max_candidates, stats
    )
