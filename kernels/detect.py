"""detect_postprocess: the detector's raw head tensor -> boxes in original-image coordinates.

Per image: best class per anchor, score = sigmoid(logit) > conf_thres, boxes decoded from the
anchor table (ltrb distances in stride units, clamped at 0), candidates ordered by score (ties: lower
anchor index first) and cut to `max_candidates`, class-aware greedy NMS (a box is dropped when its
IoU with a kept box of the same class is > iou_thres, as torchvision.ops.batched_nms), at most
`max_det` kept, mapped back through the letterbox (x - left) / sx and clipped to the image.
NaN logits or boxes never become detections.

Output: dets float32 [B, max_det, 6] = (x1, y1, x2, y2, score, class), and counts int64 [B].
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


def _check(head: np.ndarray, anchors: np.ndarray, scales, pads, orig_hw) -> None:
    if head.ndim != 3 or head.shape[0] == 0 or head.shape[2] < 5:
        raise ValueError(f"detect_postprocess: head must be [B, N, 4 + C], got {head.shape}")
    if anchors.shape != (head.shape[1], 3):
        raise ValueError(f"detect_postprocess: anchors {anchors.shape} do not fit head {head.shape}")
    b = head.shape[0]
    for name, a in (("scales", scales), ("pads", pads), ("orig_hw", orig_hw)):
        if np.shape(a) != (b, 2):
            raise ValueError(f"detect_postprocess: {name} must be [{b}, 2], got {np.shape(a)}")


def _logit(p: float) -> float:
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))


def detect_postprocess_ref(
    head, anchors, scales, pads, orig_hw, conf_thres=0.25, iou_thres=0.45, max_det=300,
    max_candidates=30000,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """NumPy reference (one image at a time, plain loops for NMS)."""
    _check(head, anchors, scales, pads, orig_hw)
    n_b = head.shape[0]
    dets = np.zeros((n_b, max_det, 6), np.float32)
    counts = np.zeros(n_b, np.int64)
    for b in range(n_b):
        h = head[b].astype(np.float32)
        logits = h[:, 4:]
        safe = np.where(np.isnan(logits), -np.inf, logits)
        cls = safe.argmax(1)
        best = safe[np.arange(len(cls)), cls]
        score = (1.0 / (1.0 + np.exp(-best.astype(np.float64)))).astype(np.float32)
        d = np.maximum(h[:, :4], 0) * anchors[:, 2:3]
        boxes = np.stack(
            [anchors[:, 0] - d[:, 0], anchors[:, 1] - d[:, 1],
             anchors[:, 0] + d[:, 2], anchors[:, 1] + d[:, 3]], 1,
        )  # fmt: skip
        ok = (best > _logit(conf_thres)) & ~np.isnan(boxes).any(1)
        cand = np.nonzero(ok)[0]
        cand = cand[np.argsort(-score[cand], kind="stable")][:max_candidates]
        keep: list[int] = []
        removed = np.zeros(len(cand), bool)
        for i in range(len(cand)):
            if removed[i]:
                continue
            keep.append(cand[i])
            if len(keep) == max_det:
                break
            bi = boxes[cand[i]]
            for j in range(i + 1, len(cand)):
                if removed[j] or cls[cand[j]] != cls[cand[i]]:
                    continue
                bj = boxes[cand[j]]
                iw = min(bi[2], bj[2]) - max(bi[0], bj[0])
                ih = min(bi[3], bj[3]) - max(bi[1], bj[1])
                inter = max(iw, 0.0) * max(ih, 0.0)
                union = (bi[2] - bi[0]) * (bi[3] - bi[1]) + (bj[2] - bj[0]) * (bj[3] - bj[1]) - inter
                if union > 0 and inter / union > iou_thres:
                    removed[j] = True
        sx, sy = scales[b]
        left, top = pads[b]
        oh, ow = orig_hw[b]
        for n, a in enumerate(keep):
            x1, y1, x2, y2 = boxes[a]
            dets[b, n] = (
                min(max((x1 - left) / sx, 0), ow), min(max((y1 - top) / sy, 0), oh),
                min(max((x2 - left) / sx, 0), ow), min(max((y2 - top) / sy, 0), oh),
                score[a], cls[a],
            )  # fmt: skip
        counts[b] = len(keep)
    return dets, counts


@njit(parallel=True, cache=True)
def _detect(head, anchors, scales, pads, orig_hw, logit_thres, iou_thres, max_det, max_cand, dets,
            counts, n_cand):  # fmt: skip
    n_b, n_a, n_col = head.shape
    for b in prange(n_b):
        cls = np.empty(n_a, np.int64)
        score = np.empty(n_a, np.float32)
        boxes = np.empty((n_a, 4), np.float32)
        ok = np.zeros(n_a, np.bool_)
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
            ok[a] = True
            n_ok += 1
        cand = np.empty(n_ok, np.int64)
        j = 0
        for a in range(n_a):
            if ok[a]:
                cand[j] = a
                j += 1
        order = np.argsort(-score[cand], kind="mergesort")
        cand = cand[order][:max_cand]
        n_cand[b] = cand.size
        removed = np.zeros(cand.size, np.bool_)
        n_keep = 0
        sx, sy = scales[b, 0], scales[b, 1]
        left, top = pads[b, 0], pads[b, 1]
        oh, ow = orig_hw[b, 0], orig_hw[b, 1]
        for i in range(cand.size):
            if removed[i]:
                continue
            ai = cand[i]
            bx1, by1, bx2, by2 = boxes[ai, 0], boxes[ai, 1], boxes[ai, 2], boxes[ai, 3]
            dets[b, n_keep, 0] = min(max((bx1 - left) / sx, 0.0), ow)
            dets[b, n_keep, 1] = min(max((by1 - top) / sy, 0.0), oh)
            dets[b, n_keep, 2] = min(max((bx2 - left) / sx, 0.0), ow)
            dets[b, n_keep, 3] = min(max((by2 - top) / sy, 0.0), oh)
            dets[b, n_keep, 4] = score[ai]
            dets[b, n_keep, 5] = cls[ai]
            n_keep += 1
            if n_keep == max_det:
                break
            area_i = (bx2 - bx1) * (by2 - by1)
            for k in range(i + 1, cand.size):
                aj = cand[k]
                if removed[k] or cls[aj] != cls[ai]:
                    continue
                iw = min(bx2, boxes[aj, 2]) - max(bx1, boxes[aj, 0])
                ih = min(by2, boxes[aj, 3]) - max(by1, boxes[aj, 1])
                inter = max(iw, np.float32(0)) * max(ih, np.float32(0))
                area_j = (boxes[aj, 2] - boxes[aj, 0]) * (boxes[aj, 3] - boxes[aj, 1])
                union = area_i + area_j - inter
                if union > 0 and inter / union > iou_thres:
                    removed[k] = True
        counts[b] = n_keep


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
    """Decode + threshold + class-aware NMS + map back; see the module docstring.

    `anchors` is `models.detector.anchor_points(h, w)`; `scales`/`pads` come from
    `letterbox_normalize`; `orig_hw` [B, 2] is each original image's (height, width).
    If `stats` is given, it receives the candidate count per image (the NMS workload).
    """
    _check(head, anchors, scales, pads, orig_hw)
    if max_det < 1:
        raise ValueError("detect_postprocess: max_det must be >= 1")
    head = np.ascontiguousarray(head, dtype=np.float32)
    n_b = head.shape[0]
    dets = np.zeros((n_b, max_det, 6), np.float32)
    counts = np.zeros(n_b, np.int64)
    n_cand = np.zeros(n_b, np.int64)
    _detect(
        head, np.ascontiguousarray(anchors, np.float32),
        np.asarray(scales, np.float64), np.asarray(pads, np.float64),
        np.asarray(orig_hw, np.float64), _logit(conf_thres), float(iou_thres),
        int(max_det), int(max_candidates), dets, counts, n_cand,
    )  # fmt: skip
    if stats is not None:
        stats["candidates"] = n_cand
    return dets, counts
