"""How a detector's output is decoded: our raw head, or the YOLOv8/YOLO11 export layout.

- "raw" (models/vision/detector.py): [B, N, 4 + C], ltrb distances in strides from anchor points at
  strides 8/16/32, class logits; decoded by `kernels.detect_postprocess`.
- "yolov8": [B, 4 + C, A], (cx, cy, w, h) in input pixels, sigmoid class scores; decoded by
  `kernels.yolo_postprocess`. Ultralytics' YOLOv8 and YOLO11 ONNX exports have this layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.kernelbench import peers
from kernels import detect_postprocess, yolo_postprocess
from models.vision.detector import anchor_points

FORMATS = ("raw", "yolov8")


@dataclass
class DetectHead:
    """A detector's output format at its input size; decodes a batch with our kernel or with torch."""

    format: str
    input_hw: tuple[int, int]

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"detection format must be one of {FORMATS}, got {self.format!r}")
        self.anchors = anchor_points(*self.input_hw) if self.format == "raw" else None

    def decode(
        self, y: np.ndarray, scales, pads, orig_hw, conf: float, iou: float, max_det: int, stats: dict | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Our kernel: dets [B, max_det, 6] and counts [B]; `stats["candidates"]` per image if given."""
        if self.format == "raw":
            return detect_postprocess(y, self.anchors, scales, pads, orig_hw, conf, iou, max_det, stats=stats)
        return yolo_postprocess(y, scales, pads, orig_hw, conf, iou, max_det, stats=stats)

    def decode_torch(self, y: torch.Tensor, conf: float, iou: float, max_det: int) -> tuple[list, list[int]]:
        """The torch peer (decode, threshold, torchvision batched_nms per image): (kept boxes per
        image, candidates per image)."""
        if self.format == "raw":
            return peers.torch_detect_postprocess(y, torch.from_numpy(self.anchors), conf, iou, max_det)
        return peers.torch_yolo_postprocess(y, conf, iou, max_det)

    def identity_meta(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scales, pads, orig_hw) that leave boxes in input pixels (for comparing raw outputs)."""
        return np.ones((n, 2)), np.zeros((n, 2)), np.full((n, 2), 1e9)


def recognise(shape: tuple[int, ...], input_hw: tuple[int, int]) -> str | None:
    """The format a detector output of `shape` has at `input_hw`, or None if it fits neither."""
    if len(shape) != 3:
        return None
    n_anchors = len(anchor_points(*input_hw))
    if shape[1] == n_anchors and shape[2] >= 5:
        return "raw"
    if shape[1] >= 5 and shape[2] >= 1 and shape[2] != shape[1]:
        return "yolov8"
    return None
