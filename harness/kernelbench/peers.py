"""The libraries people would otherwise use for pre- and post-processing, written as well as a
competent user would write them. The kernel benchmark compares our kernels with these, and
`modelpower run --preprocess opencv|torchvision` runs the whole data path through them.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import batched_nms, box_convert
from torchvision.transforms.v2 import functional as F

from kernels import letterbox_geometry


def _affine(mean, std):
    std64 = np.asarray(std, np.float64)
    return 1.0 / std64, -np.asarray(mean, np.float64) / std64


def opencv_letterbox(images, out_hw, mean, std, *, bgr_to_rgb=True, letterbox=True, pad_value=114.0, out=None):
    """cv2.resize straight into a preallocated padded canvas, then per-channel normalization
    (cv2.addWeighted with a float32 destination) written into the output planes."""
    import cv2  # optional (the test extra): the OpenCV peer is skipped without it

    th, tw = out_hw
    n = len(images)
    if out is None:
        out = np.empty((n, 3, th, tw), np.float32)
    a, b = _affine(mean, std)
    canvas = np.full((th, tw, 3), pad_value, np.uint8)
    scales, pads = np.empty((n, 2)), np.empty((n, 2), np.int64)
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        new_h, new_w, top, left = letterbox_geometry((h, w), out_hw, letterbox)
        if letterbox:
            canvas[:] = pad_value
        cv2.resize(
            img,
            (new_w, new_h),
            dst=canvas[top : top + new_h, left : left + new_w],
            interpolation=cv2.INTER_LINEAR,
        )
        planes = cv2.split(canvas)
        for c in range(3):
            src = planes[2 - c] if bgr_to_rgb else planes[c]
            cv2.addWeighted(src, float(a[c]), src, 0.0, float(b[c]), dst=out[i, c], dtype=cv2.CV_32F)
        scales[i] = (new_w / w, new_h / h)
        pads[i] = (left, top)
    return out, scales, pads


def torchvision_letterbox(images, out_hw, mean, std, *, bgr_to_rgb=True, letterbox=True, pad_value=114.0, out=None):
    """torchvision.transforms.v2 on uint8 tensors: resize (bilinear, no antialias), pad, to float,
    normalize."""
    th, tw = out_hw
    n = len(images)
    result = torch.empty((n, 3, th, tw)) if out is None else torch.from_numpy(out)
    scales, pads = np.empty((n, 2)), np.empty((n, 2), np.int64)
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        new_h, new_w, top, left = letterbox_geometry((h, w), out_hw, letterbox)
        x = torch.from_numpy(img).permute(2, 0, 1)
        if bgr_to_rgb:
            x = x.flip(0)
        x = F.resize(x, [new_h, new_w], antialias=False)
        x = F.pad(x, [left, top, tw - new_w - left, th - new_h - top], fill=int(pad_value))
        x = F.to_dtype(x, torch.float32, scale=False)
        result[i] = F.normalize(x, list(mean), list(std))
        scales[i] = (new_w / w, new_h / h)
        pads[i] = (left, top)
    return result.numpy(), scales, pads


def torch_softmax_topk(logits: torch.Tensor, k: int):
    p = torch.softmax(logits, -1)
    return p.topk(min(k, logits.shape[-1]), -1)


def torch_seg_argmax(logits: torch.Tensor):
    return logits.argmax(1).to(torch.uint8)


def torch_sample_tokens(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, generator=None):
    """The usual torch sampling: temperature, top-k, softmax, top-p cut, multinomial."""
    if temperature == 0:
        return logits.argmax(-1)
    v, i = (logits / temperature).topk(top_k if top_k > 0 else logits.shape[-1], -1)
    p = torch.softmax(v, -1)
    if top_p < 1:
        c = p.cumsum(-1)
        p = p * ((c - p) < top_p)
        p = p / p.sum(-1, keepdim=True)
    return i.gather(1, torch.multinomial(p, 1, generator=generator)).squeeze(1)


def torch_detect_postprocess(head: torch.Tensor, anchors: torch.Tensor, conf_thres, iou_thres, max_det):
    """Decode + threshold + torchvision.ops.batched_nms per image, as a YOLO user writes it:
    (kept (boxes, scores, classes) per image, candidates per image)."""
    results, candidates = [], []
    for h in head:
        score, cls = torch.sigmoid(h[:, 4:]).max(1)
        ok = score > conf_thres
        d = h[ok, :4].clamp(min=0) * anchors[ok, 2:3]
        a = anchors[ok]
        boxes = torch.stack([a[:, 0] - d[:, 0], a[:, 1] - d[:, 1], a[:, 0] + d[:, 2], a[:, 1] + d[:, 3]], 1)
        keep = batched_nms(boxes, score[ok], cls[ok], iou_thres)[:max_det]
        results.append((boxes[keep], score[ok][keep], cls[ok][keep]))
        candidates.append(int(ok.sum()))
    return results, candidates


def torch_yolo_postprocess(out: torch.Tensor, conf_thres, iou_thres, max_det):
    """The YOLOv8 export layout [B, 4 + C, A] as its users decode it: transpose, best class,
    threshold, cxcywh -> xyxy, torchvision.ops.batched_nms per image."""
    results, candidates = [], []
    for o in out:
        score, cls = o[4:].max(0)
        ok = score > conf_thres
        boxes = box_convert(o[:4].T[ok], "cxcywh", "xyxy")
        keep = batched_nms(boxes, score[ok], cls[ok], iou_thres)[:max_det]
        results.append((boxes[keep], score[ok][keep], cls[ok][keep]))
        candidates.append(int(ok.sum()))
    return results, candidates
