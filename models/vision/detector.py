"""Our anchor-free, YOLO-style detector (YOLOv8-like layout), returning the raw head tensor.

Output: float tensor [batch, N, 4 + num_classes], one row per anchor point of the three levels
(strides 8, 16, 32, each in row-major order). Columns 0..3 are the raw left/top/right/bottom
distances from the anchor centre in units of the level's stride (decode: max(raw, 0) * stride);
the rest are raw class logits (decode: sigmoid). No NMS, no decoding inside the model: that is
post-processing, done by `kernels.vision.detect.detect_postprocess`.

Random init with a trained detector's workload (`init_prior`): a random head scores every anchor
alike, so at the 0.25 threshold every anchor of every image was a candidate and NMS always filled
the 300-detection cap. `init_prior` sets each level's class-logit bias from a prior probability,
as YOLOv8 does (prior = OBJECTS_PER_LEVEL / (classes x cells of the level)), scales the class
convolution so that its logits spread by LOGIT_SPREAD around that bias on the calibration input,
and starts the box distances at BOX_BIAS strides (YOLOv8 starts its box branch at 1.0), so that
candidates cluster into overlapping boxes that NMS suppresses; the resulting counts are in
results/reference/cpu-2core-epyc/README.md.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

STRIDES = (8, 16, 32)
OBJECTS_PER_LEVEL = 5.0  # the prior's expected objects per image and level
LOGIT_SPREAD = 2.0  # standard deviation of the class logits around the prior's bias
BOX_BIAS = 3.0  # initial box distances (each side) in strides


class ConvBnAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int = 3, s: int = 1):
        super().__init__(nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.SiLU())


class Bottleneck(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.cv1, self.cv2 = ConvBnAct(c, c), ConvBnAct(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv2(self.cv1(x))


class C2f(nn.Module):
    """CSP block: split, n bottlenecks whose every output is kept, concatenate, fuse."""

    def __init__(self, c_in: int, c_out: int, n: int):
        super().__init__()
        self.c = c_out // 2
        self.cv1 = ConvBnAct(c_in, 2 * self.c, 1)
        self.blocks = nn.ModuleList(Bottleneck(self.c) for _ in range(n))
        self.cv2 = ConvBnAct((2 + n) * self.c, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        for block in self.blocks:
            y.append(block(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.cv1 = ConvBnAct(c, c // 2, 1)
        self.pool = nn.MaxPool2d(5, 1, 2)
        self.cv2 = ConvBnAct(c * 2, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0 = self.cv1(x)
        y1 = self.pool(y0)
        y2 = self.pool(y1)
        return self.cv2(torch.cat([y0, y1, y2, self.pool(y2)], 1))


class Head(nn.Module):
    """Decoupled head for one level: a box branch and a class branch."""

    def __init__(self, c: int, num_classes: int, c_box: int, c_cls: int):
        super().__init__()
        self.box = nn.Sequential(ConvBnAct(c, c_box), ConvBnAct(c_box, c_box), nn.Conv2d(c_box, 4, 1))
        self.cls = nn.Sequential(ConvBnAct(c, c_cls), ConvBnAct(c_cls, c_cls), nn.Conv2d(c_cls, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([self.box(x), self.cls(x)], 1)  # [B, 4 + C, H, W]
        return out.flatten(2).transpose(1, 2)  # [B, H*W, 4 + C]


class YoloDetector(nn.Module):
    """Backbone (C2f stages + SPPF), PAN neck, decoupled heads at strides 8/16/32."""

    strides = STRIDES

    def __init__(self, num_classes: int, width: float = 0.5, depth: int = 1):
        super().__init__()
        c1, c2, c3, c4, c5 = (max(8, int(c * width)) for c in (64, 128, 256, 512, 1024))
        self.num_classes = num_classes
        self.stem = nn.Sequential(ConvBnAct(3, c1, 3, 2), ConvBnAct(c1, c2, 3, 2), C2f(c2, c2, depth))
        self.stage3 = nn.Sequential(ConvBnAct(c2, c3, 3, 2), C2f(c3, c3, 2 * depth))
        self.stage4 = nn.Sequential(ConvBnAct(c3, c4, 3, 2), C2f(c4, c4, 2 * depth))
        self.stage5 = nn.Sequential(ConvBnAct(c4, c5, 3, 2), C2f(c5, c5, depth), SPPF(c5))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.top4 = C2f(c5 + c4, c4, depth)
        self.top3 = C2f(c4 + c3, c3, depth)
        self.down3 = ConvBnAct(c3, c3, 3, 2)
        self.bot4 = C2f(c3 + c4, c4, depth)
        self.down4 = ConvBnAct(c4, c4, 3, 2)
        self.bot5 = C2f(c4 + c5, c5, depth)
        c_box, c_cls = max(16, c3 // 4), max(c3, min(num_classes, 100))
        self.heads = nn.ModuleList(Head(c, num_classes, c_box, c_cls) for c in (c3, c4, c5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p3 = self.stage3(self.stem(x))
        p4 = self.stage4(p3)
        p5 = self.stage5(p4)
        t4 = self.top4(torch.cat([self.up(p5), p4], 1))
        n3 = self.top3(torch.cat([self.up(t4), p3], 1))
        n4 = self.bot4(torch.cat([self.down3(n3), t4], 1))
        n5 = self.bot5(torch.cat([self.down4(n4), p5], 1))
        return torch.cat([h(f) for h, f in zip(self.heads, (n3, n4, n5), strict=True)], 1)

    @torch.no_grad()
    def init_prior(self, x: torch.Tensor, input_hw: tuple[int, int]) -> dict:
        """Class-logit bias from a prior probability per level, logit spread and box size set on
        `x` (a calibration batch, BatchNorm already calibrated); cells are counted at `input_hw`, the
        size the model runs at. Returns what was set."""
        feats: list[torch.Tensor] = []
        hooks = [
            h.cls[-1].register_forward_hook(lambda m, i, o: feats.append(o - m.bias.view(1, -1, 1, 1)))
            for h in self.heads
        ]
        try:
            self(x)
        finally:
            for hook in hooks:
                hook.remove()
        priors = []
        for head, f, s in zip(self.heads, feats, self.strides, strict=True):
            cells = math.ceil(input_hw[0] / s) * math.ceil(input_hw[1] / s)
            prior = min(0.5, OBJECTS_PER_LEVEL / (self.num_classes * max(cells, 1.0)))
            conv = head.cls[-1]
            conv.weight.mul_(LOGIT_SPREAD / max(float(f.std()), 1e-6))
            conv.bias.fill_(math.log(prior / (1 - prior)))
            head.box[-1].bias.fill_(BOX_BIAS)
            priors.append(prior)
        return {"class_prior": priors, "logit_spread": LOGIT_SPREAD, "box_bias_strides": BOX_BIAS}


def anchor_points(height: int, width: int, strides: tuple[int, ...] = STRIDES) -> np.ndarray:
    """Anchor centres and strides, float32 [N, 3] = (cx, cy, stride), in the detector's row order."""
    rows = []
    for s in strides:
        h, w = -(-height // s), -(-width // s)  # ceil, as a stride-2 conv with padding gives
        ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        cx = (xs.ravel() + 0.5) * s
        cy = (ys.ravel() + 0.5) * s
        rows.append(np.stack([cx, cy, np.full(cx.shape, s)], 1))
    return np.concatenate(rows).astype(np.float32)
