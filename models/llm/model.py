"""Decoder LLMs ("industry brains"): Llama/Qwen2/Mistral-family architecture, gpt-fast style.

The architectures are `models.llm.config`'s `LLMConfig` presets. The model has RMSNorm, rotary position
embeddings (Hugging Face's rotate-half convention), grouped-query attention over a static KV cache
preallocated for the run, and a SwiGLU MLP. Module names mirror Hugging Face's (model.layers.N.
self_attn.q_proj, ...), so a local checkpoint's safetensors load without renaming.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kernels.llm.norm import rmsnorm_rows
from models.llm import cpu_step
from models.llm.config import LLMConfig
from models.llm.cpu_step import bf16_bits
from models.llm.linear import QROWS_MAX, Linear, QuantLinear


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and x.dtype == torch.bfloat16 == self.weight.dtype
            and x.numel() <= 8 * x.shape[-1]
            and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
        ):
            rows = bf16_bits(x.reshape(-1, x.shape[-1]).contiguous())
            y = rmsnorm_rows(rows, bf16_bits(self.weight.detach()), self.eps)
            return torch.from_numpy(y.view(np.int16)).view(torch.bfloat16).view(x.shape)
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def rope_tables(cfg: LLMConfig, length: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, device=device).float() / cfg.head_dim))
    if cfg.rope_factors is not None:
        inv = inv / torch.tensor(cfg.rope_factors, device=device, dtype=torch.float32)
    freqs = torch.outer(torch.arange(length, device=device).float(), inv)
    emb = torch.cat([freqs, freqs], -1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, D]; cos/sin [T, D] (rotate-half convention)."""
    x1, x2 = x.chunk(2, -1)
    return x * cos + torch.cat([-x2, x1], -1) * sin


class Attention(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        h, kv = cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim
        self.cfg = cfg
        self.q_proj = Linear(h, h, bias=cfg.qkv_bias)
        self.k_proj = Linear(h, kv, bias=cfg.qkv_bias)
        self.v_proj = Linear(h, kv, bias=cfg.qkv_bias)
        self.o_proj = Linear(h, h, bias=False)
        self.qkv_proj: nn.Module | None = None  # fuse(): q, k and v in one matmul
        self.k_cache: torch.Tensor | None = None
        self.v_cache: torch.Tensor | None = None

    def fuse(self) -> None:
        """q_proj, k_proj and v_proj become one `qkv_proj` (rows concatenated): one matmul reads them."""
        fused = _fused_linear([self.q_proj, self.k_proj, self.v_proj])
        if fused is not None:
            self.qkv_proj = fused
            del self.q_proj, self.k_proj, self.v_proj

    def forward(self, x, cos, sin, pos: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Prefill (t > 1, from position 0: `mask` None is plain causal, else [B, 1, t, t] for left
        padding) or decode (t = 1: `mask` [B or 1, 1, 1, cache] over the whole static cache)."""
        b, t, _ = x.shape
        c = self.cfg
        if self.qkv_proj is not None:
            kv = c.num_kv_heads * c.head_dim
            q, k, v = self.qkv_proj(x).split([c.hidden_size, kv, kv], -1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = q.view(b, t, c.num_heads, c.head_dim).transpose(1, 2)
        k = k.view(b, t, c.num_kv_heads, c.head_dim).transpose(1, 2)
        v = v.view(b, t, c.num_kv_heads, c.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        self.k_cache.index_copy_(2, pos, k)
        self.v_cache.index_copy_(2, pos, v)
        if t > 1:  # prefill from position 0: causal attention over the prompt itself
            keys, vals, causal = k, v, mask is None
        else:  # decode: the whole static cache, positions after `pos` masked out (static shapes)
            keys, vals, causal = self.k_cache, self.v_cache, False
        out = F.scaled_dot_product_attention(
            q, keys, vals, attn_mask=mask, is_causal=causal, enable_gqa=c.num_kv_heads != c.num_heads
        )
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.gate_proj = Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.gate_up_proj: nn.Module | None = None  # fuse(): gate and up in one matmul

    def fuse(self) -> None:
        fused = _fused_linear([self.gate_proj, self.up_proj])
        if fused is not None:
            self.gate_up_proj = fused
            del self.gate_proj, self.up_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up_proj is not None:
            gate, up = self.gate_up_proj(x).chunk(2, -1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(F.silu(gate) * up)


def _fused_linear(parts: list[nn.Module]) -> nn.Module | None:
    """One Linear whose weight (and bias) rows are `parts`' in order; the parts' tensors are freed
    with them. `unfused_state_dict` gives them back as views. GGUF block weights fuse when their
    types match (`QuantLinear.cat`); None when the parts cannot be fused (they stay apart)."""
    if all(isinstance(p, QuantLinear) for p in parts):
        return QuantLinear.cat(parts)
    if not all(isinstance(p, nn.Linear) for p in parts):
        return None
    w = torch.cat([p.weight.detach() for p in parts])
    fused = Linear(w.shape[1], w.shape[0], bias=parts[0].bias is not None, device="meta", dtype=w.dtype)
    fused.weight = nn.Parameter(w, requires_grad=False)
    if parts[0].bias is not None:
        fused.bias = nn.Parameter(torch.cat([p.bias.detach() for p in parts]), requires_grad=False)
    return fused


class Layer(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, pos, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, pos, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.norm_eps)


class DecoderLM(nn.Module):
    """forward(tokens [B, T], pos [T]) -> logits [B, T, vocab] (float32), filling the KV cache."""

    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.cfg = cfg
        self.model = Backbone(cfg)
        self.lm_head = Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.cos: torch.Tensor | None = None
        self.sin: torch.Tensor | None = None
        # models.llm.cpu_step's flat lists for the one-call decode step: False not built yet, None not all GGUF blocks
        self.step: cpu_step.StepModel | bool | None = False

    def setup_cache(self, batch: int, length: int) -> None:
        """Preallocate the static KV cache and RoPE tables for `batch` sequences of `length`.

        Kept (same tensors) when the shape is unchanged, so a compiled decode step and its CUDA
        graphs see the same buffers every generation; stale entries are masked in decode and
        overwritten by the next prefill."""
        c, p = self.cfg, next(self.parameters())
        shape = (batch, c.num_kv_heads, length, c.head_dim)
        first = self.model.layers[0].self_attn.k_cache
        if first is not None and tuple(first.shape) == shape and first.dtype == p.dtype:
            return
        for layer in self.model.layers:
            layer.self_attn.k_cache = torch.zeros(shape, device=p.device, dtype=p.dtype)
            layer.self_attn.v_cache = torch.zeros(shape, device=p.device, dtype=p.dtype)
        self.cos, self.sin = rope_tables(c, length, p.device, p.dtype)

    def fuse(self) -> DecoderLM:
        """Fused projections for decode (q/k/v in one matmul, gate/up in one): the same logits with
        fewer, larger matmuls. Checkpoints load before fusing, under their own names."""
        for layer in self.model.layers:
            if layer.self_attn.qkv_proj is None:
                layer.self_attn.fuse()
            if layer.mlp.gate_up_proj is None:
                layer.mlp.fuse()
        self.step = False  # the step's lists are rebuilt from the fused weights
        return self

    def unfused_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under Hugging Face's names (q_proj, gate_proj, ...), fused ones as row views
        (no copy): what a transformers model of the same architecture loads."""
        sd, c = {}, self.cfg
        kv = c.num_kv_heads * c.head_dim
        split = {
            "qkv_proj": (["q_proj", "k_proj", "v_proj"], [c.hidden_size, kv, kv]),
            "gate_up_proj": (["gate_proj", "up_proj"], [c.intermediate_size] * 2),
        }
        for name, t in self.state_dict().items():
            parent, proj, kind = name.rsplit(".", 2) if name.count(".") >= 2 else ("", "", name)
            if proj in split:
                for part, view in zip(split[proj][0], t.split(split[proj][1]), strict=True):
                    sd[f"{parent}.{part}.{kind}"] = view
            else:
                sd[name] = t
        return sd

    def forward(
        self, tokens: torch.Tensor, pos: torch.Tensor, pad: torch.Tensor | None = None, last_only: bool = False
    ) -> torch.Tensor:
        """`pos`: the cache slots of `tokens` (shared by the batch). `pad` [B], if given: row b is left
        padded with pad[b] slots, which no query attends to and which do not count as positions
        (row b's token at slot j sits at RoPE position j - pad[b], as with Hugging Face's
        attention mask and position ids). `last_only`: logits [B, 1, vocab] of the last position
        only, in the model's dtype (what sampling needs); else float32 logits of every position."""
        length = self.cos.shape[0]
        slots = torch.arange(length, device=tokens.device)
        if pad is None:
            cos, sin = self.cos[pos], self.sin[pos]
        else:
            rows = (pos.view(1, -1) - pad.view(-1, 1)).clamp(min=0)  # [B, t]
            cos, sin = self.cos[rows].unsqueeze(1), self.sin[rows].unsqueeze(1)  # [B, 1, t, D]
        cache = self.model.layers[0].self_attn.k_cache
        on_cpu = (
            tokens.shape[1] == 1
            and tokens.device.type == "cpu"
            and cache.dtype == torch.bfloat16
            and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
        )
        span, mask = None, None
        if on_cpu:  # models.llm.cpu_step: one Numba call per layer's attention, or one for the whole step
            span = cpu_step.decode_span(int(pos[0]), pad, tokens.shape[0], self.cos, self.sin)
            if last_only and tokens.shape[0] <= QROWS_MAX and cpu_step.step_ready(self):
                return cpu_step.whole_step(self, tokens, span)
        elif tokens.shape[1] == 1:  # decode: attend to cache positions <= pos (and not padding)
            mask = (slots <= pos[0]).view(1, 1, 1, length)
            if pad is not None:
                mask = mask & (slots.view(1, -1) >= pad.view(-1, 1)).view(-1, 1, 1, length)
        else:
            if int(pos[0]) != 0:
                raise ValueError("prefill must start at position 0")
            if pad is not None:
                t = tokens.shape[1]
                q, k = slots[:t].view(t, 1), slots[:t].view(1, t)
                real = k.view(1, 1, t) >= pad.view(-1, 1, 1)  # [B, 1 (query), t (key)]
                # causal over real keys; a padding slot attends to itself only, so nothing is NaN
                mask = ((k <= q) & real | (k == q)).unsqueeze(1)  # [B, 1, t, t]
        x = self.model.embed_tokens(tokens)  # after the whole-step path, which looks its rows up itself
        for layer in self.model.layers:
            x = cpu_step.layer_step(layer, x, span) if span is not None else layer(x, cos, sin, pos, mask)
        if last_only:
            return self.lm_head(self.model.norm(x[:, -1:]))
        return self.lm_head(self.model.norm(x)).float()


def init_random(model: DecoderLM, seed: int, std: float = 0.02) -> DecoderLM:
    """Seeded random weights, filled where the model lives, in its dtype (seconds even for 7B on a GPU)."""
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith(".bias"):
                p.zero_()
            else:
                p.normal_(0.0, std, generator=g)
    return model


def build_llm(cfg: LLMConfig, device: torch.device, dtype: torch.dtype, seed: int = 0) -> DecoderLM:
    """The model on `device` in `dtype` with seeded random weights, never materialised elsewhere."""
    with torch.device("meta"):
        model = DecoderLM(cfg)
    model = model.to_empty(device=device).to(dtype)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return init_random(model, seed).eval()


__all__ = ["DecoderLM", "build_llm", "init_random"]
