"""The decoder's matmuls: `Linear` (bf16/fp16/fp32 weights), `Int8Linear` (int8 weight-only) and
`QuantLinear` / `QuantEmbedding` (GGUF blocks as stored: `--precision native`).

Both run torch's GEMM for prefill and on a GPU. At decode on the CPU (a few rows, inference, not
under torch.compile) they call our Numba kernel `kernels.llm.gemv.linear_rows` (bf16 and int8 weights;
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

from kernels.llm.gemv import linear_rows
from kernels.llm.qgemv import BLOCKS, LANES, dequantize_rows, dequantize_t, pack, qlinear_into, unpack

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


QROWS_MAX = 4  # rows a GGUF-block matmul computes from the blocks; more dequantize to bf16 for torch's GEMM
_TILE: dict[str, np.ndarray] = {}  # one reused bf16 buffer for prefill's dequantized weights (no page faults)


def _tile(k: int, n_padded: int) -> np.ndarray:
    size = k * n_padded
    if _TILE.get("buf") is None or _TILE["buf"].size < size:
        _TILE["buf"] = np.empty(size, np.uint16)
    return _TILE["buf"][:size].reshape(k, n_padded)


class QuantLinear(nn.Module):
    """A GGUF matmul weight kept in its block format (`qtype`: Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K).

    Decode (at most `QROWS_MAX` rows on the CPU) runs `kernels.llm.qgemv.qlinear_rows` on the blocks;
    more rows (prefill) dequantize the weight to bf16 into one reused buffer and run torch's GEMM.
    The blocks are a plain array (not a parameter), interleaved over 64 rows by `qgemv.pack`."""

    def __init__(self, in_features: int, out_features: int, qtype: str, bias: bool = False, device=None, dtype=None):
        super().__init__()
        if qtype not in BLOCKS:
            raise ValueError(f"no kernel for GGUF type {qtype}")
        self.in_features, self.out_features, self.qtype = in_features, out_features, qtype
        self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype)) if bias else None
        self.blocks: np.ndarray | None = None  # packed

    def set_blocks(self, rows: np.ndarray) -> None:
        """The weight from the file's bytes, uint8 [out_features, row bytes]."""
        if rows.shape[0] != self.out_features:
            raise ValueError(f"{self.qtype}: {rows.shape[0]} rows for a weight of {self.out_features}")
        self.blocks = pack(np.ascontiguousarray(rows), self.qtype, self.in_features)

    def file_rows(self) -> np.ndarray:
        """The weight in the file's layout, uint8 [out_features, row bytes]."""
        return unpack(self.blocks, self.out_features)

    def weight_bytes(self) -> int:
        """The block bytes one pass over the weight reads (padding rows excluded)."""
        size, nbytes = BLOCKS[self.qtype]
        return self.out_features * self.in_features // size * nbytes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            raise ValueError("GGUF block weights (--precision native) run on the CPU only")
        n, k, n_padded = self.out_features, self.in_features, self.blocks.shape[0] * LANES
        if x.numel() <= QROWS_MAX * k:
            x2 = x.reshape(-1, k).float().contiguous()
            y = torch.empty((x2.shape[0], n_padded), dtype=torch.float32)
            qlinear_into(x2.numpy(), self.blocks, self.qtype, y.numpy())
            y = y if n == n_padded else y[:, :n]
            if self.bias is not None:
                y = y + self.bias
            return y.to(x.dtype).reshape(*x.shape[:-1], n)
        wt = dequantize_t(self.blocks, self.qtype, k, n, out=_tile(k, n_padded))
        w = torch.from_numpy(wt).view(torch.bfloat16)[:, :n].t()  # [n, k] view of W^T
        bias = None if self.bias is None else self.bias.to(torch.bfloat16)
        return F.linear(x.to(torch.bfloat16), w, bias).to(x.dtype)

    @staticmethod
    def cat(parts: list[QuantLinear]) -> QuantLinear | None:
        """One QuantLinear whose rows are `parts`' in order (fused projections), or None when their
        types differ (K-quant files mix types: those stay separate matmuls)."""
        if len({p.qtype for p in parts}) != 1 or len({p.in_features for p in parts}) != 1:
            return None
        has_bias = parts[0].bias is not None
        if any((p.bias is not None) != has_bias for p in parts):
            return None
        n = sum(p.out_features for p in parts)
        fused = QuantLinear(parts[0].in_features, n, parts[0].qtype, bias=False)
        fused.set_blocks(np.concatenate([p.file_rows() for p in parts]))
        if has_bias:
            fused.bias = nn.Parameter(torch.cat([p.bias.detach() for p in parts]), requires_grad=False)
        return fused


class QuantEmbedding(nn.Module):
    """The token embedding kept in its GGUF block format: the looked-up rows are dequantized."""

    def __init__(self, num_embeddings: int, embedding_dim: int, qtype: str, dtype: torch.dtype):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.qtype, self.dtype = num_embeddings, embedding_dim, qtype, dtype
        self.blocks: np.ndarray | None = None

    def rows(self, tokens: torch.Tensor) -> np.ndarray:
        """float32 [tokens, dim] of the looked-up rows; an id outside the vocabulary is an IndexError,
        as in nn.Embedding (the blocks hold padding rows up to a multiple of 64)."""
        ids = tokens.reshape(-1).cpu().numpy()
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise IndexError(f"token id out of range [0, {self.num_embeddings})")
        return dequantize_rows(self.blocks, self.qtype, self.embedding_dim, ids)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.rows(tokens)).to(self.dtype).reshape(*tokens.shape, self.embedding_dim)


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
        if isinstance(m, QuantLinear):
            if id(m.blocks) not in seen:
                seen.add(id(m.blocks))
                total += m.weight_bytes()
        elif isinstance(m, nn.Linear | Int8Linear):
            tensors = [m.weight] + ([m.scales] if isinstance(m, Int8Linear) else [])
            for t in tensors:
                if t.data_ptr() not in seen:
                    seen.add(t.data_ptr())
                    total += t.numel() * t.element_size()
    return total


__all__ = [
    "QROWS_MAX",
    "ROWS_MAX",
    "Int8Linear",
    "Linear",
    "QuantEmbedding",
    "QuantLinear",
    "matmul_weight_bytes",
    "quantize_int8",
]
