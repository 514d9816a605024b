"""sample_tokens: next-token sampling for LLM decode over logits [B, V].

Order (as Hugging Face transformers): temperature, then top-k, then top-p.
- temperature 0: greedy, the highest logit (equal logits: the lower token id).
- top_k > 0 keeps the k highest logits (0 = all); top_p < 1 then keeps the smallest prefix of
  the remaining tokens, in probability order, whose mass reaches top_p (at least one token).
- The draw for row b at decode step `step` uses u = uniform(seed, b, step) from a counter-based
  hash (splitmix64), identical in the NumPy, CPU and CUDA versions: the same inputs give the same
  tokens everywhere, and no RNG state is carried between calls.
- NaN logits are never chosen; +inf logits share all probability; a row with no logit above
  -inf (or only NaN) gives token -1.
On the GPU both run through kernels/common/rowtopk_cuda.py (several blocks per row, then a merge); sampling
needs 1 <= top_k <= 64 there.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.common.device import as_device_array, device_empty, on_device
from kernels.common.draw import GOLDEN, MIX1, MIX2, draw, uniform
from kernels.common.rowtopk import row_topk
from kernels.common.rowtopk_cuda import MAX_K as DEVICE_MAX_K
from kernels.common.rowtopk_cuda import MODE_GREEDY, MODE_SAMPLE, row_topk_device
from kernels.common.sort import argsort_desc

MASK64 = (1 << 64) - 1


def _check(logits, temperature, top_k, top_p) -> None:
    if len(logits.shape) != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"sample_tokens: logits must be a non-empty [B, V] array, got {tuple(logits.shape)}")
    if not temperature >= 0:
        raise ValueError(f"sample_tokens: temperature must be >= 0, got {temperature}")
    if top_k < 0:
        raise ValueError(f"sample_tokens: top_k must be >= 0, got {top_k}")
    if not 0 < top_p <= 1:
        raise ValueError(f"sample_tokens: top_p must be in (0, 1], got {top_p}")


# ------------------------------------------------------------------------------ NumPy reference
def _mix_py(z: int) -> int:
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def uniform_ref(seed: int, row: int, step: int) -> float:
    """The draw in [0, 1) for (seed, row, step)."""
    z = _mix_py((_mix_py((seed + GOLDEN * (row + 1)) & MASK64) + step) & MASK64)
    return (z >> 11) * 2.0**-53


def sample_tokens_ref(logits, temperature, top_k=0, top_p=1.0, seed=0, step=0) -> np.ndarray:
    """NumPy reference."""
    _check(logits, temperature, top_k, top_p)
    out = np.empty(logits.shape[0], np.int64)
    for b, row in enumerate(np.asarray(logits, np.float32)):
        v = row.astype(np.float64)
        valid = ~np.isnan(v)
        if not valid.any() or v[valid].max() == -np.inf:
            out[b] = -1
            continue
        order = np.lexsort((np.arange(v.size), -np.where(valid, v, -np.inf), ~valid))[: valid.sum()]
        if temperature == 0:
            out[b] = order[0]
            continue
        k = top_k if 0 < top_k < order.size else order.size
        order = order[:k]
        z = v[order] / temperature
        e = (z == np.inf).astype(np.float64) if z[0] == np.inf else np.exp(z - z[0])
        p = e / e.sum()
        if top_p < 1:
            cut = int(np.searchsorted(np.cumsum(p), top_p)) + 1
            e = e[: min(cut, e.size)]
        target = uniform_ref(seed, b, step) * e.sum()
        acc, pick = 0.0, len(e) - 1
        for j, ej in enumerate(e):
            acc += ej
            if acc > target:
                pick = j
                break
        out[b] = order[pick]
    return out


# ------------------------------------------------------------------------------ CPU (Numba)
@njit(inline="always")
def _greedy(row):
    """First index of the highest non-NaN logit; -1 if no logit is above -inf."""
    m = np.float32(-np.inf)
    for c in range(row.size):  # a plain max: vectorizes
        v = row[c]
        m = v if v > m else m
    if m == -np.inf:
        return -1
    for c in range(row.size):
        if row[c] == m:
            return c
    return -1


@njit(parallel=True, cache=True)
def _sample(logits, temperature, top_k, top_p, seed, step, out):
    n_rows, vocab = logits.shape
    small_k = 0 < top_k <= DEVICE_MAX_K and top_k < vocab
    for b in prange(n_rows):
        row = logits[b]
        if temperature == 0:
            out[b] = _greedy(row)
            continue
        if small_k:
            k = top_k
            top_v = np.empty(k, np.float64)
            top_i = np.empty(k, np.int64)
            m, _ = row_topk(row, k, top_v, top_i)
            n = 0
            while n < k and top_i[n] >= 0 and not np.isnan(top_v[n]):
                n += 1
        else:  # large k or all tokens: one radix sort of the row
            order = argsort_desc(row)
            n = 0
            while n < vocab and not np.isnan(row[order[n]]):
                n += 1
            m = np.float64(row[order[0]]) if n > 0 else -np.inf
            n = min(n, top_k) if top_k > 0 else n
            top_i = order[:n]
            top_v = np.empty(n, np.float64)
            for j in range(n):
                top_v[j] = row[top_i[j]]
        if n == 0 or m == -np.inf:
            out[b] = -1
        else:
            out[b] = draw(top_v, top_i, n, temperature, top_p, uniform(seed, b, step), np.empty(n, np.float64))


# ------------------------------------------------------------------------------ public
def sample_tokens(
    logits, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0, step=0, out=None
):
    """One token id per row of `logits` [B, V]; see the module docstring for the rules.

    Host arrays run on the CPU and return an int64 NumPy array; CUDA arrays (torch CUDA tensors,
    Numba device arrays) run on the GPU and return an int64 device array (`out`, an int64 [B]
    device array, if given: a decode loop allocates it once). On the GPU `step` may be an int64
    device array of one element, read by the kernel: a CUDA graph of the decode step replays the
    same launch while the step advances on the device. Kernels on torch tensors run on torch's
    current stream.
    """
    _check(logits, temperature, top_k, top_p)
    seed_u = np.uint64(seed & MASK64)
    if on_device(logits):
        if temperature != 0 and not 0 < top_k <= DEVICE_MAX_K:
            raise ValueError(f"sample_tokens on the GPU needs temperature 0 or 1 <= top_k <= {DEVICE_MAX_K}")
        d = as_device_array(logits)
        out = device_empty(logits, (d.shape[0],), np.int64) if out is None else out
        if temperature == 0:
            row_topk_device(logits, 1, MODE_GREEDY, out=out)
        else:
            top_k = min(top_k, d.shape[1])
            row_topk_device(logits, top_k, MODE_SAMPLE, temperature, top_p, seed_u, step, out=out)
        return out
    logits = np.ascontiguousarray(logits, np.float32)
    out = np.empty(logits.shape[0], np.int64)
    _sample(logits, float(temperature), int(top_k), float(top_p), seed_u, int(step), out)
    return out
