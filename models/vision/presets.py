"""Vision presets: defect classification, detection and segmentation for industry inspection.

Architectures come from torchvision (classifiers, DeepLabV3, LR-ASPP) and `models/vision/detector.py`
(our YOLO-style detector). Each preset mirrors a public data set's resolution and class count, so
the benchmark does the work that industry would: it does not ship or download any weights.
"""

from __future__ import annotations

import torch
import torchvision
from torchvision.models.segmentation.deeplabv3 import DeepLabV3
from torchvision.models.segmentation.lraspp import LRASPP

from models.vision.detector import YoloDetector
from models.vision.preset import Preset
from models.vision.registry import register


class DeepLabV3Logits(DeepLabV3):
    """torchvision's DeepLabV3 returning the raw logits tensor instead of a dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)["out"]


class LRASPPLogits(LRASPP):
    """torchvision's LR-ASPP returning the raw logits tensor instead of a dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)["out"]


def _resnet50(n: int) -> torch.nn.Module:
    return torchvision.models.resnet50(weights=None, num_classes=n)


def _mobilenet_v3_large(n: int) -> torch.nn.Module:
    return torchvision.models.mobilenet_v3_large(weights=None, num_classes=n)


def _efficientnet_b0(n: int) -> torch.nn.Module:
    return torchvision.models.efficientnet_b0(weights=None, num_classes=n)


def _yolo_s(n: int) -> torch.nn.Module:
    return YoloDetector(num_classes=n, width=0.5, depth=1)


def _deeplabv3_resnet50(n: int) -> torch.nn.Module:
    m = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=n, aux_loss=False
    )
    m.__class__ = DeepLabV3Logits  # same parameters and state-dict keys; forward returns a tensor
    return m


def _lraspp_mobilenet_v3(n: int) -> torch.nn.Module:
    m = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=n)
    m.__class__ = LRASPPLogits
    return m


# The preset table: one preset per block, its fields grouped as a reader compares them (the
# formatter would put each field on its own line).
# fmt: off
register(Preset(
    name="resnet50-imagenet", industry="reference", task="classify", arch="ResNet-50",
    input_hw=(224, 224), num_classes=1000, builder=_resnet50,
    description="ImageNet ResNet-50 at 224: the MLPerf anchor (4.09 GMACs per image)",
))
register(Preset(
    name="steel-defect-resnet50", industry="steel", task="classify", arch="ResNet-50",
    input_hw=(224, 224), num_classes=6, builder=_resnet50,
    description="steel-surface defect classes (NEU-CLS style: 6 classes at 224x224)",
))
register(Preset(
    name="steel-defect-mobilenetv3", industry="steel", task="classify", arch="MobileNetV3-Large",
    input_hw=(224, 224), num_classes=6, builder=_mobilenet_v3_large,
    description="steel-surface defect classes on an edge-class network (6 classes at 224x224)",
))
register(Preset(
    name="grid-insulator-efficientnet", industry="power grid", task="classify",
    arch="EfficientNet-B0", input_hw=(224, 224), num_classes=4, builder=_efficientnet_b0,
    description="insulator condition from line-inspection crops (4 classes at 224x224)",
))
register(Preset(
    name="pcb-defect-yolo", industry="electronics", task="detect", arch="YOLO-style-s",
    input_hw=(640, 640), num_classes=6, builder=_yolo_s, letterbox=True,
    mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0),
    description="PCB defects (missing hole, mouse bite, open, short, spur, spurious copper) at 640",
))
register(Preset(
    name="grid-inspection-yolo", industry="power grid", task="detect", arch="YOLO-style-s",
    input_hw=(1024, 1024), num_classes=4, builder=_yolo_s, letterbox=True,
    mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0),
    description="drone line inspection (insulator, damper, nest, broken strand) at 1024",
))
register(Preset(
    name="driving-detect-yolo", industry="driving", task="detect", arch="YOLO-style-s",
    input_hw=(736, 1280), num_classes=10, builder=_yolo_s, letterbox=True,
    mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0),
    description="road objects (BDD100K style: 10 classes) at 1280x736",
))
register(Preset(
    name="driving-seg-deeplabv3", industry="driving", task="segment", arch="DeepLabV3-ResNet50",
    input_hw=(512, 1024), num_classes=19, builder=_deeplabv3_resnet50,
    description="driving-scene semantic segmentation (Cityscapes style: 19 classes at 1024x512)",
))
register(Preset(
    name="steel-seg-lraspp", industry="steel", task="segment", arch="LRASPP-MobileNetV3",
    input_hw=(256, 1600), num_classes=5, builder=_lraspp_mobilenet_v3,
    description="steel-strip defect masks (Severstal style: 4 defects + background at 1600x256)",
))
# fmt: on
