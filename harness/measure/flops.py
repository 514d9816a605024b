"""FLOPs per sample, counted from the graph actually run (torch's FlopCounterMode).

One multiply-add = 2 FLOPs. The count covers matrix multiplies and convolutions (as MLPerf's
utilisation appendix does); elementwise ops, pooling and resampling are not counted. The model is
rebuilt on the meta device, so counting costs no real compute and no memory.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_flops(module: torch.nn.Module, example: torch.Tensor) -> int:
    """FLOPs of one forward pass of `module` on `example` (any device, meta included)."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        module(example)
    return int(counter.get_total_flops())


def preset_flops_per_sample(builder, num_classes: int, input_hw: tuple[int, int]) -> int:
    """FLOPs per image of a preset's architecture at its input size (batch 1, on the meta device)."""
    with torch.device("meta"):
        model = builder(num_classes).eval()
    return count_flops(model, torch.empty(1, 3, *input_hw, device="meta"))


def param_count(builder, num_classes: int) -> int:
    with torch.device("meta"):
        model = builder(num_classes)
    return sum(p.numel() for p in model.parameters())
