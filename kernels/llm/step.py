"""decode_step: a whole decoder token step on the CPU in one Numba call (GGUF blocks as stored).

At batch 1 a step of a small model is ~200 small operations; driven from PyTorch each costs a
module call, dtype casts and a kernel dispatch (on SmolLM2-135M about 6 ms of a 12 ms step, the
block matmuls being 5 ms). Here the embedding rows come in, and one call runs every layer -
RMSNorm, the q/k/v matmuls, RoPE with the KV-cache write and attention (`kernels.llm.attention`), the
output matmul, the residual, RMSNorm, gate/up, SiLU x up, down, the residual - then the final norm
and the LM head, and returns the logits. The matmuls are `kernels.llm.qgemv`'s block kernels, each a
parallel region over the weight's rows. The residual stream and every intermediate are float32
(as in llama.cpp); the KV cache is the model's bf16 cache, shared with torch's prefill.

A model is described by flat lists (`numba.typed.List`): the matmul weights in order, each with
its type id (index in `qgemv.BLOCKS`) and row count, and per layer the span of parts that make
q/k/v, o, gate/up and down (q/k/v and gate/up are one fused weight or several parts whose outputs
are concatenated: K-quant files mix types, which do not fuse).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels.common.fastexp import exp_chunk
from kernels.llm.attention import decode_attention_into
from kernels.llm.qgemv import mv_q4, mv_q4_multi, mv_q6_k, mv_q8_0, mv_q8_0_multi, mv_qk


@njit(cache=True)
def _qmv(qid, x, p, out):
    multi = 2 <= x.shape[0] <= 4
    if qid == 0:
        if multi:
            mv_q8_0_multi(x, p, out)
        else:
            mv_q8_0(x, p, out)
    elif qid == 1 or qid == 2:
        if multi:
            mv_q4_multi(x, p, out, qid == 2)
        else:
            mv_q4(x, p, out, qid == 2)
    elif qid == 3 or qid == 4:
        mv_qk(x, p, out, qid == 4)
    else:
        mv_q6_k(x, p, out)


@njit(cache=True)
def _parts(x, ws, qids, ns, first, last, out):
    """out[:, columns] = x @ W^T for weights first..last-1, their outputs side by side."""
    col = 0
    for i in range(first, last):
        p, n = ws[i], ns[i]
        if n == p.shape[0] * p.shape[3]:
            _qmv(qids[i], x, p, out[:, col : col + n])
        else:
            tmp = np.empty((x.shape[0], p.shape[0] * p.shape[3]), np.float32)
            _qmv(qids[i], x, p, tmp)
            out[:, col : col + n] = tmp[:, :n]
        col += n


@njit(fastmath=True, cache=True)
def _rmsnorm(x, w, eps, out):
    for m in range(x.shape[0]):
        acc = np.float32(0.0)
        for i in range(x.shape[1]):
            acc += x[m, i] * x[m, i]
        r = np.float32(1.0) / np.sqrt(acc / np.float32(x.shape[1]) + np.float32(eps))
        for i in range(x.shape[1]):
            out[m, i] = x[m, i] * r * w[i]


@njit(cache=True)
def _decode_step(x, pos, lo, cos, sin, norms, ws, qids, ns, biases, spans, k_caches, v_caches, n_heads, eps, logits):
    b_n = x.shape[0]
    kv_heads, d = k_caches[0].shape[1], k_caches[0].shape[3]
    h = np.empty_like(x)
    qkv = np.empty((b_n, (n_heads + 2 * kv_heads) * d), np.float32)
    att = np.empty((b_n, n_heads * d), np.float32)
    delta = np.empty_like(x)
    for layer in range(len(k_caches)):
        s = spans[layer]  # part indices: q/k/v from s[0], o from s[1], gate/up from s[2], down from s[3] to s[4]
        _rmsnorm(x, norms[2 * layer], eps, h)
        _parts(h, ws, qids, ns, s[0], s[1], qkv)
        bias = biases[layer]
        if bias.size:
            for m in range(b_n):
                qkv[m] += bias
        decode_attention_into(qkv, cos, sin, k_caches[layer], v_caches[layer], pos, lo, n_heads, att)
        _parts(att, ws, qids, ns, s[1], s[2], delta)
        x += delta
        _rmsnorm(x, norms[2 * layer + 1], eps, h)
        inter = 0
        for i in range(s[2], s[3]):
            inter += ns[i]
        inter //= 2
        gu = np.empty((b_n, 2 * inter), np.float32)
        _parts(h, ws, qids, ns, s[2], s[3], gu)
        act, e, n = np.empty((b_n, inter), np.float32), np.empty(inter, np.float32), np.empty(inter, np.int32)
        for m in range(b_n):  # SiLU(gate) x up; e^-g vectorized (common.fastexp), clamped where it overflows
            for i in range(inter):
                act[m, i] = min(-gu[m, i], np.float32(87.0))
            exp_chunk(act[m], np.float32(0.0), e, n)
            for i in range(inter):
                act[m, i] = gu[m, i] / (np.float32(1.0) + e[i]) * gu[m, inter + i]
        _parts(act, ws, qids, ns, s[3], s[4], delta)
        x += delta
    _rmsnorm(x, norms[len(norms) - 1], eps, h)
    last = len(ws) - 1
    _parts(h, ws, qids, ns, last, last + 1, logits)


def decode_step(x, pos: int, lo: np.ndarray, cos: np.ndarray, sin: np.ndarray, model) -> np.ndarray:
    """Logits float32 [B, vocab] of one token per row. `x` float32 [B, hidden]: the embedding rows
    (the residual stream, updated in place); `model`: a `StepModel` (the flat lists)."""
    logits = np.empty((x.shape[0], model.ns[-1]), np.float32)
    _decode_step(
        x,
        pos,
        lo,
        cos,
        sin,
        model.norms,
        model.ws,
        model.qids,
        model.ns,
        model.biases,
        model.spans,
        model.k_caches,
        model.v_caches,
        model.n_heads,
        model.eps,
        logits,
    )
    return logits


__all__ = ["decode_step"]
