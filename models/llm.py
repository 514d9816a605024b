"""Decoder LLMs ("industry brains"): Llama/Qwen2/Mistral-family architecture, gpt-fast style.

`LLMConfig` plus the dict `LLM_CONFIGS` is the whole registry. The model has RMSNorm, rotary position
embeddings (Hugging Face's rotate-half convention), grouped-query attention over a static KV cache
preallocated for the run, and a SwiGLU MLP. Module names mirror Hugging Face's (model.layers.N.
self_attn.q_proj, ...), so a local checkpoint's safetensors load without renaming.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kernels.attention import decode_attention
from kernels.llm_step import decode_step
from kernels.norm import rmsnorm_rows
from kernels.qgemv import BLOCKS
from models.llm_linear import QROWS_MAX, Linear, QuantEmbedding, QuantLinear


@dataclass(frozen=True)
class LLMConfig:
    name: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    max_position: int = 4096
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    qkv_bias: bool = False  # Qwen2 has biases on q, k, v
    tie_embeddings: bool = False
    family: str = "llama"
    # RoPE frequency scaling: each rotary frequency divided by its factor (head_dim / 2 of them), as
    # Llama 3.1's "llama3" rope_scaling does (`llama3_rope_factors`) and llama.cpp's rope_freqs tensor stores
    rope_factors: tuple[float, ...] | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def matmul_params(self) -> int:
        """Weights used in matmuls for every token: all layers' projections and the LM head (the
        input embedding table is a lookup, not a matmul, so it is not counted)."""
        h, kv = self.hidden_size, self.num_kv_heads * self.head_dim
        attn = h * h + 2 * h * kv + h * h
        mlp = 3 * h * self.intermediate_size
        return self.num_layers * (attn + mlp) + h * self.vocab_size

    def param_count(self) -> int:
        h, kv = self.hidden_size, self.num_kv_heads * self.head_dim
        bias = (h + 2 * kv) * self.num_layers if self.qkv_bias else 0
        norms = (2 * self.num_layers + 1) * h
        embed = self.vocab_size * h
        head = 0 if self.tie_embeddings else self.vocab_size * h
        return self.matmul_params() - self.vocab_size * h + head + embed + bias + norms


def llama3_rope_factors(head_dim: int, theta: float, factor: float, low_freq_factor: float,
                        high_freq_factor: float, original_max_position: int) -> tuple[float, ...]:  # fmt: skip
    """Llama 3.1's "llama3" RoPE scaling as one divisor per frequency (Hugging Face's
    `_compute_llama3_parameters`): long wavelengths divided by `factor`, short ones kept, a smooth
    blend between."""
    inv = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    wavelen = 2 * np.pi / inv
    low_wavelen, high_wavelen = original_max_position / low_freq_factor, original_max_position / high_freq_factor
    smooth = (original_max_position / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    scaled = np.where(medium, (1 - smooth) * scaled / factor + smooth * scaled, scaled)
    return tuple(float(x) for x in inv / scaled)


def check_rope_factors(factors: tuple[float, ...], where: str) -> tuple[float, ...]:
    """`factors` if every divisor is finite and in [0.001, 10000] (Llama 3.1's lie in [1, 8]); a UserError
    naming `where` otherwise: outside that, the rotary frequencies overflow or vanish."""
    from models.errors import UserError

    if not all(np.isfinite(f) and 1e-3 <= f <= 1e4 for f in factors):
        raise UserError(f"{where}: RoPE scaling divides a frequency by {min(factors):.3g}..{max(factors):.3g}; "
                        "each divisor must lie in [0.001, 10000]")  # fmt: skip
    return factors


# Llama 3.1 (8B, 70B): rope_scaling {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1,
# "high_freq_factor": 4, "original_max_position_embeddings": 8192}, rope_theta 500000
LLAMA31_ROPE = llama3_rope_factors(128, 500000.0, 8.0, 1.0, 4.0, 8192)

LLM_CONFIGS = {
    c.name: c
    for c in (
        LLMConfig("llm-tiny", 4096, 256, 4, 8, 4, 688, max_position=1024, family="llama"),
        LLMConfig(
            "qwen2-0.5b", 151936, 896, 24, 14, 2, 4864, 32768, 1e6, qkv_bias=True, tie_embeddings=True, family="qwen2"
        ),
        LLMConfig(
            "qwen2-1.5b", 151936, 1536, 28, 12, 2, 8960, 32768, 1e6, qkv_bias=True, tie_embeddings=True, family="qwen2"
        ),
        LLMConfig("llama2-7b", 32000, 4096, 32, 32, 32, 11008, 4096, family="llama"),
        LLMConfig("qwen2.5-14b", 152064, 5120, 48, 40, 8, 13824, 32768, 1e6, qkv_bias=True, family="qwen2"),
        LLMConfig("qwen2.5-32b", 152064, 5120, 64, 40, 8, 27648, 32768, 1e6, qkv_bias=True, family="qwen2"),
        LLMConfig("llama3-70b", 128256, 8192, 80, 64, 8, 28672, 8192, 500000.0, family="llama"),
        # The MLPerf Inference LLM workloads (llama2-70b-99, llama3.1-8b) and Llama 3.1 70B, as published
        LLMConfig("llama2-70b", 32000, 8192, 80, 64, 8, 28672, 4096, norm_eps=1e-5, family="llama"),
        LLMConfig(
            "llama3.1-8b",
            128256,
            4096,
            32,
            32,
            8,
            14336,
            131072,
            500000.0,
            norm_eps=1e-5,
            rope_factors=LLAMA31_ROPE,
            family="llama",
        ),
        LLMConfig(
            "llama3.1-70b",
            128256,
            8192,
            80,
            64,
            8,
            28672,
            131072,
            500000.0,
            norm_eps=1e-5,
            rope_factors=LLAMA31_ROPE,
            family="llama",
        ),
    )
}


@dataclass
class StepModel:
    """A decoder whose matmuls are all GGUF blocks, as the flat lists `kernels.llm_step.decode_step`
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


def step_model(model: DecoderLM) -> StepModel | None:
    """The model as `decode_step` reads it, or None when a matmul is not GGUF blocks."""
    from numba.typed import List

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
    return StepModel(norms, ws, np.array(qids, np.int64), np.array(ns, np.int64), biases, np.array(spans, np.int64),
                     None, None, model.cfg.num_heads, model.cfg.norm_eps)  # fmt: skip


def _bits(t: torch.Tensor) -> np.ndarray:
    """A bf16 tensor's bit patterns as a uint16 array (no copy)."""
    return t.view(torch.int16).numpy().view(np.uint16)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dtype == torch.bfloat16 == self.weight.dtype and x.numel() <= 8 * x.shape[-1]
                and not torch.is_grad_enabled() and not torch.compiler.is_compiling()):  # fmt: skip
            rows = _bits(x.reshape(-1, x.shape[-1]).contiguous())
            y = rmsnorm_rows(rows, _bits(self.weight.detach()), self.eps)
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


@dataclass
class DecodeSpan:
    """A CPU decode step's attention inputs for `kernels.attention.decode_attention`, instead of a
    mask: the slot written (`pos`), each row's first real slot (`lo`, after left padding), and each
    row's RoPE table row [B, D] in float32, at position pos - lo (as the prefill placed its tokens)."""

    pos: int
    lo: np.ndarray
    cos: np.ndarray
    sin: np.ndarray


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
        if isinstance(mask, DecodeSpan):  # CPU decode: RoPE, cache write and attention in one Numba call
            if self.qkv_proj is not None:
                qkv = self.qkv_proj(x)
            else:
                qkv = torch.cat([self.q_proj(x), self.k_proj(x), self.v_proj(x)], -1)
            qkv = qkv.reshape(b, -1).float().numpy()
            out = decode_attention(qkv, mask.cos, mask.sin, _bits(self.k_cache), _bits(self.v_cache), mask.pos,
                                   mask.lo, c.num_heads)  # fmt: skip
            return self.o_proj(torch.from_numpy(out).to(x.dtype).view(b, 1, -1))
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
        self.step: StepModel | bool | None = False  # False: not built yet; None: not all GGUF blocks

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

    def _step_ready(self) -> bool:
        """True when the whole decode step can run as one Numba call (every matmul GGUF blocks)."""
        if self.step is False:
            self.step = step_model(self)
        if self.step is None:
            return False
        cache = self.model.layers[0].self_attn.k_cache
        if self.step.cache is not cache:  # views of the current KV cache
            from numba.typed import List

            self.step.k_caches, self.step.v_caches = List(), List()
            for layer in self.model.layers:
                self.step.k_caches.append(_bits(layer.self_attn.k_cache))
                self.step.v_caches.append(_bits(layer.self_attn.v_cache))
            self.step.cache = cache
        return True

    def _whole_step(self, tokens: torch.Tensor, span: DecodeSpan) -> torch.Tensor:
        """Logits [B, 1, vocab] in the model's dtype from `kernels.llm_step.decode_step`."""
        emb = self.model.embed_tokens
        if isinstance(emb, QuantEmbedding):
            x = emb.rows(tokens)
        else:
            x = emb(tokens).reshape(tokens.shape[0], -1).float().numpy().copy()
        logits = decode_step(x, span.pos, span.lo, span.cos, span.sin, self.step)
        return torch.from_numpy(logits).to(self.cos.dtype).view(tokens.shape[0], 1, -1)

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
        split = {"qkv_proj": (["q_proj", "k_proj", "v_proj"], [c.hidden_size, kv, kv]),
                 "gate_up_proj": (["gate_proj", "up_proj"], [c.intermediate_size] * 2)}  # fmt: skip
        for name, t in self.state_dict().items():
            parent, proj, kind = name.rsplit(".", 2) if name.count(".") >= 2 else ("", "", name)
            if proj in split:
                for part, view in zip(split[proj][0], t.split(split[proj][1]), strict=True):
                    sd[f"{parent}.{part}.{kind}"] = view
            else:
                sd[name] = t
        return sd

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor, pad: torch.Tensor | None = None,
                last_only: bool = False) -> torch.Tensor:  # fmt: skip
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
        cpu_step = (tokens.shape[1] == 1 and tokens.device.type == "cpu" and cache.dtype == torch.bfloat16
                    and not torch.is_grad_enabled() and not torch.compiler.is_compiling())  # fmt: skip
        if cpu_step:  # one Numba call per layer (kernels.attention), no mask tensor
            p = int(pos[0])
            lo = np.zeros(tokens.shape[0], np.int64) if pad is None else pad.numpy().astype(np.int64)
            rows = np.maximum(p - lo, 0)  # each row's RoPE position: its slot less its left padding
            mask = DecodeSpan(p, lo, self.cos[rows].float().numpy(), self.sin[rows].float().numpy())
            if last_only and tokens.shape[0] <= QROWS_MAX and self._step_ready():
                return self._whole_step(tokens, mask)
        elif tokens.shape[1] == 1:  # decode: attend to cache positions <= pos (and not padding)
            mask = (slots <= pos[0]).view(1, 1, 1, length)
            if pad is not None:
                mask = mask & (slots.view(1, -1) >= pad.view(-1, 1)).view(-1, 1, 1, length)
        else:
            if int(pos[0]) != 0:
                raise ValueError("prefill must start at position 0")
            mask = None
            if pad is not None:
                t = tokens.shape[1]
                q, k = slots[:t].view(t, 1), slots[:t].view(1, t)
                real = k.view(1, 1, t) >= pad.view(-1, 1, 1)  # [B, 1 (query), t (key)]
                # causal over real keys; a padding slot attends to itself only, so nothing is NaN
                mask = ((k <= q) & real | (k == q)).unsqueeze(1)  # [B, 1, t, t]
        x = self.model.embed_tokens(tokens)  # after the whole-step path, which looks its rows up itself
        for layer in self.model.layers:
            x = layer(x, cos, sin, pos, mask)
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


def attention_flops(cfg: LLMConfig, context: int) -> int:
    """QK^T and AV of one token attending to `context` positions, all layers: 2 x 2 x ctx x d_attn."""
    return 2 * 2 * cfg.num_layers * context * cfg.num_heads * cfg.head_dim


def prefill_flops(cfg: LLMConfig, prompt_len: int) -> int:
    """One sequence's prefill: per token 2 x matmul params, plus causal attention (token i sees i+1)."""
    return 2 * cfg.matmul_params() * prompt_len + sum(attention_flops(cfg, i + 1) for i in range(prompt_len))


def decode_flops(cfg: LLMConfig, context: int) -> int:
    """One decoded token attending to `context` positions (itself included)."""
    return 2 * cfg.matmul_params() + attention_flops(cfg, context)


def generation_flops(cfg: LLMConfig, prompt_len: int, output_tokens: int) -> int:
    """One request's FLOPs: the prefill of `prompt_len` tokens, then `output_tokens` - 1 decoded tokens
    (the first comes from the prefill), each attending to its context. The same sums as
    `prefill_flops` + `decode_flops`, in closed form (attention is linear in the context)."""
    per_ctx = attention_flops(cfg, 1)
    n = max(output_tokens - 1, 0)
    prefill = 2 * cfg.matmul_params() * prompt_len + per_ctx * prompt_len * (prompt_len + 1) // 2
    contexts = n * (2 * prompt_len + n + 3) // 2  # sum of prompt_len + i + 1 for i = 1..n
    return prefill + 2 * cfg.matmul_params() * n + per_ctx * contexts


__all__ = ["LLM_CONFIGS", "DecoderLM", "LLMConfig", "build_llm", "decode_flops", "generation_flops", "prefill_flops"]
