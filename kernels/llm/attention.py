"""decode_attention: one decode step's attention on the CPU, RoPE and the KV-cache write included.

At decode each sequence adds one token: its q, k and v (one fused projection row), rotated by RoPE
at its position, k and v written into the static bf16 cache, then q attends over the cache slots
[lo, pos] of its row (lo skips left padding). In torch this is about twenty small ops per layer,
and bf16 `scaled_dot_product_attention` on the CPU takes ~90 us at one query (fp32 ~16 us); here it
is one Numba call per layer. Rotate-half RoPE (Hugging Face's convention), grouped-query heads,
float32 arithmetic; the cache holds bf16 bit patterns (uint16, a view of torch's bf16 tensor).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from kernels.common.bits import bf16_bits_to_f32_ref, bf16_to_f32, f32_to_bf16_bits
from kernels.common.fastexp import exp_chunk


@njit(parallel=True, fastmath=True, cache=True)
def decode_attention_into(qkv, cos, sin, k_cache, v_cache, pos, lo, n_heads, out):
    b_n, kv_heads, _, d = k_cache.shape
    half = d // 2
    group = n_heads // kv_heads
    scale = np.float32(1.0 / math.sqrt(d))
    # RoPE on k and the cache write, per (row, kv head)
    for t in prange(b_n * kv_heads):
        b, h = t // kv_heads, t % kv_heads
        k = qkv[b, (n_heads + h) * d : (n_heads + h + 1) * d]
        v = qkv[b, (n_heads + kv_heads + h) * d : (n_heads + kv_heads + h + 1) * d]
        kc, vc = k_cache[b, h, pos], v_cache[b, h, pos]
        for i in range(half):
            x1, x2 = k[i], k[i + half]
            kc[i] = f32_to_bf16_bits(x1 * cos[b, i] - x2 * sin[b, i])
            kc[i + half] = f32_to_bf16_bits(x2 * cos[b, i + half] + x1 * sin[b, i + half])
        for i in range(d):
            vc[i] = f32_to_bf16_bits(v[i])
    for t in prange(b_n * n_heads):
        b, h = t // n_heads, t % n_heads
        kvh = h // group
        q = np.empty(d, np.float32)
        src = qkv[b, h * d : (h + 1) * d]
        for i in range(half):
            q[i] = (src[i] * cos[b, i] - src[i + half] * sin[b, i]) * scale
            q[i + half] = (src[i + half] * cos[b, i + half] + src[i] * sin[b, i + half]) * scale
        first = lo[b]
        n = pos + 1 - first
        scores, expd = np.empty(max(n, 1), np.float32), np.empty(max(n, 1), np.int32)
        top = np.float32(-np.inf)
        for s in range(n):
            kr = k_cache[b, kvh, first + s]
            acc = np.float32(0.0)
            for i in range(d):
                acc += q[i] * bf16_to_f32(kr[i])
            scores[s] = acc
            top = max(top, acc)
        exp_chunk(scores[:n], top, scores[:n], expd[:n])  # in place: e^(s - top), vectorized
        total = np.float32(0.0)
        for s in range(n):
            total += scores[s]
        o = out[b, h * d : (h + 1) * d]
        o[:] = 0.0
        for s in range(n):
            vr, p = v_cache[b, kvh, first + s], scores[s] / total
            for i in range(d):
                o[i] += p * bf16_to_f32(vr[i])


def decode_attention(
    qkv: np.ndarray,
    cos: np.ndarray,
    sin: np.ndarray,
    k_cache: np.ndarray,
    v_cache: np.ndarray,
    pos: int,
    lo: np.ndarray,
    n_heads: int,
) -> np.ndarray:
    """qkv float32 [B, (H + 2 KVH) D] (q, k, v of one token per row); cos/sin float32 [B, D]: each row's
    RoPE at its own position (slot `pos` less its left padding);
    caches uint16 bf16 bits [B, KVH, L, D], written at slot `pos`; `lo` int64 [B]: row b attends to
    slots lo[b]..pos. Returns the attention output float32 [B, H D] (before o_proj)."""
    b_n, kv_heads, length, d = k_cache.shape
    if cos.shape != (b_n, d) or sin.shape != (b_n, d) or cos.dtype != np.float32 or sin.dtype != np.float32:
        raise ValueError(f"decode_attention: cos and sin must be float32 [{b_n}, {d}]")
    if qkv.dtype != np.float32 or qkv.shape != (b_n, (n_heads + 2 * kv_heads) * d) or n_heads % kv_heads or d % 2:
        raise ValueError(f"decode_attention: qkv must be float32 [{b_n}, {(n_heads + 2 * kv_heads) * d}]")
    if not 0 <= pos < length or lo.shape != (b_n,) or (lo < 0).any() or (lo > pos).any():
        raise ValueError(f"decode_attention: position {pos} or the row starts are outside the cache of {length}")
    out = np.empty((b_n, n_heads * d), np.float32)
    decode_attention_into(np.ascontiguousarray(qkv), cos, sin, k_cache, v_cache, pos, lo.astype(np.int64), n_heads, out)
    return out


def decode_attention_ref(
    qkv: np.ndarray,
    cos: np.ndarray,
    sin: np.ndarray,
    k_cache: np.ndarray,
    v_cache: np.ndarray,
    pos: int,
    lo: np.ndarray,
    n_heads: int,
) -> np.ndarray:
    """NumPy reference (float64), writing the caches the same way."""
    b_n, kv_heads, _, d = k_cache.shape
    x = qkv.astype(np.float64).reshape(b_n, n_heads + 2 * kv_heads, d)
    q, k, v = x[:, :n_heads], x[:, n_heads : n_heads + kv_heads], x[:, n_heads + kv_heads :]

    def rope(t):
        rot = np.concatenate([-t[..., d // 2 :], t[..., : d // 2]], -1)
        return t * cos.astype(np.float64)[:, None] + rot * sin.astype(np.float64)[:, None]

    def bits(t):  # float -> bf16 bits, round to nearest even
        u = t.astype(np.float32).view(np.uint32).astype(np.uint64)
        return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)

    k_cache[:, :, pos] = bits(rope(k))
    v_cache[:, :, pos] = bits(v)
    q = rope(q) / math.sqrt(d)
    out = np.zeros((b_n, n_heads, d))
    for b in range(b_n):
        for h in range(n_heads):
            kvh = h // (n_heads // kv_heads)
            keys = bf16_bits_to_f32_ref(k_cache[b, kvh, lo[b] : pos + 1]).astype(np.float64)
            vals = bf16_bits_to_f32_ref(v_cache[b, kvh, lo[b] : pos + 1]).astype(np.float64)
            s = keys @ q[b, h]
            p = np.exp(s - s.max())
            out[b, h] = (p / p.sum()) @ vals
    return out.reshape(b_n, -1).astype(np.float32)


__all__ = ["decode_attention", "decode_attention_ref"]
