"""The CPU decode step of a bf16 `DecoderLM` through Numba: attention in one call per layer
(`kernels.llm.attention`), and, when every matmul is GGUF blocks, the whole token step in one call
(`kernels.llm.step`). `DecoderLM.forward` takes this path for one token on the CPU in bf16 outside
autograd and torch.compile; the layers' own `forward` is the torch path everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numba.typed import List
from torch import nn

from kernels.llm.attention import decode_attention
from kernels.llm.qgemv import BLOCKS
from kernels.llm.step import decode_step
from models.llm.linear import QuantEmbedding, QuantLinear


def bf16_bits(t: torch.Tensor) -> np.ndarray:
    """A bf16 tensor's bit patterns as a uint16 array (no copy)."""
    return t.view(torch.int16).numpy().view(np.uint16)


@dataclass
class DecodeSpan:
    """A CPU decode step's attention inputs for `kernels.llm.attention.decode_attention`: the slot
    written (`pos`), each row's first real slot (`lo`, after left padding), and each row's RoPE
    table row [B, D] in float32, at position pos - lo (as the prefill placed its tokens)."""

    pos: int
    lo: np.ndarray
    cos: np.ndarray
    sin: np.ndarray


@dataclass
class StepModel:
    """A decoder whose matmuls are all GGUF blocks, as the flat lists `kernels.llm.step.decode_step`
    reads (see its docstring); `cache` is the KV cache the lists view (rebuilt when it changes)."""

    norms: object
    ws: object
    qids: np.ndarray
    ns: np.ndarray
    biases: object
    spans: np.ndarray
    k_caches: object
    v_caches: object
    n_heads: int
    eps: float
    cache: torch.Tensor | None = None


def step_model(model: nn.Module) -> StepModel | None:
    """`model` (a `models.llm.model.DecoderLM`) as `decode_step` reads it, or None when a matmul is not
    GGUF blocks."""
    ids = {name: i for i, name in enumerate(BLOCKS)}
    ws, qids, ns, spans, norms, biases = List(), [], [], [], List(), List()

    def f32(t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().float().numpy())

    for layer in model.model.layers:
        a, mlp = layer.self_attn, layer.mlp
        qkv = [a.qkv_proj] if a.qkv_proj is not None else [a.q_proj, a.k_proj, a.v_proj]
        gate_up = [mlp.gate_up_proj] if mlp.gate_up_proj is not None else [mlp.gate_proj, mlp.up_proj]
        groups = [qkv, [a.o_proj], gate_up, [mlp.down_proj]]
        if not all(isinstance(m, QuantLinear) for g in groups for m in g) or a.o_proj.bias is not None:
            return None
        span = [len(ns)]
        for group in groups:
            for m in group:
                ws.append(m.blocks)
                qids.append(ids[m.qtype])
                ns.append(m.out_features)
            span.append(len(ns))
        spans.append(span)
        bias = [f32(m.bias) for m in qkv if m.bias is not None]
        biases.append(np.concatenate(bias) if bias else np.zeros(0, np.float32))
        norms.append(f32(layer.input_layernorm.weight))
        norms.append(f32(layer.post_attention_layernorm.weight))
    if not isinstance(model.lm_head, QuantLinear) or model.lm_head.bias is not None:
        return None
    norms.append(f32(model.model.norm.weight))
    ws.append(model.lm_head.blocks)
    qids.append(ids[model.lm_head.qtype])
    ns.append(model.lm_head.out_features)
    return StepModel(
        norms,
        ws,
        np.array(qids, np.int64),
        np.array(ns, np.int64),
        biases,
        np.array(spans, np.int64),
        None,
        None,
        model.cfg.num_heads,
        model.cfg.norm_eps,
    )


def _bits(t: torch.Tensor) -> np.ndarray:
    """A bf16 tensor's bit patterns as a uint16 array (no copy)."""
    return t.view(torch.int16).numpy().view(np.uint16)


def attend(attn: nn.Module, x: torch.Tensor, span: DecodeSpan) -> torch.Tensor:
    """One decode token's attention for `attn` (a `models.llm.model.Attention`) on the CPU: the q/k/v
    matmul in torch, then RoPE, the KV-cache write and attention in one Numba call, then o_proj."""
    b = x.shape[0]
    if attn.qkv_proj is not None:
        qkv = attn.qkv_proj(x)
    else:
        qkv = torch.cat([attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)], -1)
    qkv = qkv.reshape(b, -1).float().numpy()
    k_cache, v_cache = bf16_bits(attn.k_cache), bf16_bits(attn.v_cache)
    out = decode_attention(qkv, span.cos, span.sin, k_cache, v_cache, span.pos, span.lo, attn.cfg.num_heads)
    return attn.o_proj(torch.from_numpy(out).to(x.dtype).view(b, 1, -1))


def layer_step(layer: nn.Module, x: torch.Tensor, span: DecodeSpan) -> torch.Tensor:
    """A decoder layer (`models.llm.model.Layer`) for one decode token on the CPU, attention through `attend`."""
    x = x + attend(layer.self_attn, layer.input_layernorm(x), span)
    return x + layer.mlp(layer.post_attention_layernorm(x))


def decode_span(pos: int, pad: torch.Tensor | None, batch: int, cos: torch.Tensor, sin: torch.Tensor) -> DecodeSpan:
    """The span of a decode step writing slot `pos`, rows left padded by `pad` [B] (None: none)."""
    lo = np.zeros(batch, np.int64) if pad is None else pad.numpy().astype(np.int64)
    rows = np.maximum(pos - lo, 0)  # each row's RoPE position: its slot less its left padding
    return DecodeSpan(pos, lo, cos[rows].float().numpy(), sin[rows].float().numpy())


def step_ready(model: nn.Module) -> bool:
    """True when `model`'s whole decode step can run as one Numba call (every matmul GGUF blocks);
    builds `model.step` on first use and points it at the current KV cache."""
    if model.step is False:
        model.step = step_model(model)
    if model.step is None:
        return False
    cache = model.model.layers[0].self_attn.k_cache
    if model.step.cache is not cache:  # views of the current KV cache
        model.step.k_caches, model.step.v_caches = List(), List()
        for layer in model.model.layers:
            model.step.k_caches.append(bf16_bits(layer.self_attn.k_cache))
            model.step.v_caches.append(bf16_bits(layer.self_attn.v_cache))
        model.step.cache = cache
    return True


def whole_step(model: nn.Module, tokens: torch.Tensor, span: DecodeSpan) -> torch.Tensor:
    """Logits [B, 1, vocab] in the model's dtype from `kernels.llm.step.decode_step` (after `step_ready`)."""
    emb = model.model.embed_tokens
    if isinstance(emb, QuantEmbedding):
        x = emb.rows(tokens)
    else:
        x = emb(tokens).reshape(tokens.shape[0], -1).float().numpy().copy()
    logits = decode_step(x, span.pos, span.lo, span.cos, span.sin, model.step)
    return torch.from_numpy(logits).to(model.cos.dtype).view(tokens.shape[0], 1, -1)
