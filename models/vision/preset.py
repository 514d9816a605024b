"""What a vision model preset is: an architecture at an industry's resolution and classes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

TASKS = ("classify", "detect", "segment")
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


@dataclass(frozen=True)
class Preset:
    """A registered model: what it is for, its input, and how to build it with random weights."""

    name: str
    industry: str
    task: str  # one of TASKS
    arch: str
    input_hw: tuple[int, int]  # (height, width) the model runs at
    num_classes: int
    builder: Callable[[int], torch.nn.Module] | None  # num_classes -> model, random init; None: an ONNX file
    description: str
    letterbox: bool = False  # aspect-preserving resize + pad (detection) vs plain resize
    mean: tuple[float, float, float] = IMAGENET_MEAN  # per channel of the model's input, on the 0..255 scale
    std: tuple[float, float, float] = IMAGENET_STD
    rgb: bool = True  # the model takes channels in R, G, B order (False: B, G, R)
    det_format: str = "raw"  # detection output: "raw" (vision/detector.py) or "yolov8" (harness/vision/detection.py)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"preset {self.name}: task must be one of {TASKS}")
