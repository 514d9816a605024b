"""The decoder's matmuls: `Linear` (bf16/fp16/fp32 weights) and `Int8Linear` (int8 weight-only).

Both run torch's GEMM for prefill and on a GPU. At decode on the CPU (a few rows, inference, not
under torch.compile) they call our Numba kernel `kernels.gemv.linear_rows` (bf16 and int8 weights;
fp32 and fp16 stay with torch): on the reference CPU, one row times a 272 MB bf16 weight took 1.8x
less time than torch's bf16 linear (`modelpower kernels`).

`Int8Linear` is gpt-fast's weight-only int8: symmetric per-output-channel scales
(s = max|w| / 127, w_q = round(w / s)), activations stay in the model's dtype, y = (x @ w_q^T) * s.
On a GPU the dequantization `w_q.to(dtype)` is fused into the matmul by torch.compile (the default
there for run-llm); eager it materialises the weight and is slower than bf16.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kernels.gemv import linear_rows

ROWS_MAX = 4  # rows (sequences) a decode matmul sends to the CPU kernel; from 8 rows torch's GEMM is faster


def _kernel_rows(x: torch.Tensor) -> bool:
    """True when `x` [..., K] is a CPU decode input the Numba kernel takes."""
    return (
        x.device.type == "cpu"
        and x.numel() <= ROWS_MAX * x.shape[-1]
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
    )


def _rows(x: torch.Tensor, w: np.ndarray, scales: np.ndarray | None, bias: torch.Tensor | None, n: int) -> torch.Tensor:
    x2 = x.reshape(-1, x.shape[-1]).float().contiguous()
    y = torch.empty((x2.shape[0], n), dtype=torch.float32)
    linear_rows(x2.numpy(), w, scales, y.numpy())
    if bias is not None:
        y += bias
    return y.to(x.dtype).view(*x.shape[:-1], n)


class Linear(nn.Linear):
    """nn.Linear whose CPU decode path (bf16 weights) is our Numba kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.dtype == torch.bfloat16 and _kernel_rows(x):
            bits = self.weight.detach().view(torch.int16).numpy().view(np.uint16)
            return _rows(x, bits, None, self.bias, self.out_features)
        return F.linear(x, self.weight, self.bias)


class Int8Linear(nn.Module):
    """int8 weight-only linear: weight int8 [N, K], scales [N] in the activations' dtype, optional bias."""

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.register_buffer("weight", weight)
        self.register_buffer("scales", scales)
        self.register_buffer("bias", bias)
        self._scales32: np.ndarray | None = None

    @staticmethod
    def quantize(linear: nn.Linear) -> Int8Linear:
        """Symmetric per-output-channel int8 of `linear`'s weight; scales in the weight's dtype."""
        w = linear.weight.detach()
        scale = (w.float().abs().amax(dim=1).clamp(min=1e-12) / 127.0).to(w.dtype)  # as stored
        q = torch.round(w.float() / scale.float()[:, None]).clamp(-127, 127).to(torch.int8)
        bias = None if linear.bias is None else linear.bias.detach()
        return Int8Linear(q, scale, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _kernel_rows(x):
            if self._scales32 is None:
                self._scales32 = self.scales.float().numpy()
            return _rows(x, self.weight.numpy(), self._scales32, self.bias, self.out_features)
        y = F.linear(x, self.weight.to(x.dtype)) * self.scales
        return y if self.bias is None else y + self.bias


def quantize_int8(model: nn.Module) -> nn.Module:
    """Every matmul of `model` (nn.Linear, the LM head included) becomes an `Int8Linear`, in place;
    each bf16 weight is freed as its int8 copy is made. Embeddings stay as they are (a lookup)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, Int8Linear.quantize(child))
        else:
            quantize_int8(child)
    return model


def matmul_weight_bytes(model: nn.Module) -> int:
    """Bytes of every matmul weight (and int8 scales) of `model`: what one decode step reads from
    memory beside the KV cache. A weight shared by two modules counts once."""
    seen, total = set(), 0
    for m in model.modules():
        if isinstance(m, nn.Linear | Int8Linear):
            tensors = [m.weight] + ([m.scales] if isinstance(m, Int8Linear) else [])
            for t in tensors:
                if t.data_ptr() not in seen:
                    seen.add(t.data_ptr())
                    total += t.numel() * t.element_size()
    return total


__all__ = ["ROWS_MAX", "Int8Linear", "Linear", "matmul_weight_bytes", "quantize_int8"]
