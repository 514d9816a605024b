"""Decoder LLM architectures: `LLMConfig` and the presets `LLM_CONFIGS`, with RoPE frequency scaling.

Plain data and NumPy (no torch): the command line reads the presets without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.errors import UserError


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


def llama3_rope_factors(
    head_dim: int,
    theta: float,
    factor: float,
    low_freq_factor: float,
    high_freq_factor: float,
    original_max_position: int,
) -> tuple[float, ...]:
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
    if not all(np.isfinite(f) and 1e-3 <= f <= 1e4 for f in factors):
        raise UserError(
            f"{where}: RoPE scaling divides a frequency by {min(factors):.3g}..{max(factors):.3g}; "
            "each divisor must lie in [0.001, 10000]"
        )
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
