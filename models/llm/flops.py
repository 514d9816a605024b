"""FLOPs of a decoder's prefill, decode and whole requests, from its `LLMConfig` (2 per multiply-add)."""

from __future__ import annotations

from models.llm.config import LLMConfig


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
