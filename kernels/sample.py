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
On the GPU, greedy is one block per row (a strided scan and a shared-memory reduction); sampling
is one thread per row and needs 1 <= top_k <= 64.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, njit, prange

from kernels.classify import CANDIDATES, ROW_THREADS, _row_topk, block_row_topk
from kernels.detect import argsort_desc
from kernels.device import as_device_array, device_empty, launch_stream, on_device

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
DEVICE_MAX_K = 64
GREEDY_THREADS = 256


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
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


@njit(inline="always")
def _uniform(seed, row, step):
    z = _mix(_mix(seed + np.uint64(GOLDEN) * np.uint64(row + 1)) + np.uint64(step))
    return np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(inline="always")
def _draw(top_v, top_i, n, temperature, top_p, u):
    """Token from the first n candidates (logits top_v, ids top_i, best first)."""
    m = top_v[0] / temperature
    e = np.empty(n, np.float64)
    for j in range(n):
        z = top_v[j] / temperature
        e[j] = (1.0 if z == np.inf else 0.0) if m == np.inf else np.exp(z - m)
    total = e.sum()
    if top_p < 1:
        acc = 0.0
        for j in range(n):
            acc += e[j] / total
            if acc >= top_p:
                n = j + 1
                break
        total = e[:n].sum()
    target = u * total
    acc = 0.0
    for j in range(n):
        acc += e[j]
        if acc > target:
            return top_i[j]
    return top_i[n - 1]


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
            m, _ = _row_topk(row, k, top_v, top_i)
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
            out[b] = _draw(top_v, top_i, n, temperature, top_p, _uniform(seed, b, step))


# ------------------------------------------------------------------------------ CUDA
_mix_dev = cuda.jit(device=True)(_mix.py_func)


@cuda.jit(device=True)
def _uniform_dev(seed, row, step):
    z = _mix_dev(_mix_dev(seed + np.uint64(GOLDEN) * np.uint64(row + 1)) + np.uint64(step))
    return np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@cuda.jit
def _sample_cuda(logits, temperature, top_k, top_p, seed, step, out):
    _sample_row_dev(logits, temperature, top_k, top_p, seed, np.uint64(step), out)


@cuda.jit
def _sample_cuda_steps(logits, temperature, top_k, top_p, seed, steps, out):
    """As _sample_cuda with the step read from device memory (`steps[0]`): a CUDA graph replays
    this one launch for every decode step, and the step counter advances on the device."""
    _sample_row_dev(logits, temperature, top_k, top_p, seed, np.uint64(steps[0]), out)


@cuda.jit(device=True)
def _sample_row_dev(logits, temperature, top_k, top_p, seed, step, out):
    """One block per row: block_row_topk, then thread 0 draws from the k candidates."""
    b = cuda.blockIdx.x
    cand_v = cuda.shared.array(CANDIDATES, np.float64)
    cand_i = cuda.shared.array(CANDIDATES, np.int64)
    red_m = cuda.shared.array(ROW_THREADS, np.float64)
    red_n = cuda.shared.array(ROW_THREADS, np.int64)
    top_v = cuda.local.array(DEVICE_MAX_K, np.float64)
    top_i = cuda.local.array(DEVICE_MAX_K, np.int64)
    k = top_k
    m, _ = block_row_topk(logits, b, k, top_v, top_i, cand_v, cand_i, red_m, red_n)
    if cuda.threadIdx.x != 0:
        return
    n = 0
    while n < k and top_i[n] >= 0 and not math.isnan(top_v[n]):
        n += 1
    if n == 0 or m == -np.inf:
        out[b] = -1
        return
    if temperature == 0:
        out[b] = top_i[0]
        return
    mz = top_v[0] / temperature
    total = 0.0
    for j in range(n):
        z = top_v[j] / temperature
        top_v[j] = (1.0 if z == np.inf else 0.0) if mz == np.inf else math.exp(z - mz)
        total += top_v[j]
    if top_p < 1:
        acc = 0.0
        for j in range(n):
            acc += top_v[j] / total
            if acc >= top_p:
                n = j + 1
                break
        total = 0.0
        for j in range(n):
            total += top_v[j]
    target = _uniform_dev(seed, b, step) * total
    acc = 0.0
    out[b] = top_i[n - 1]
    for j in range(n):
        acc += top_v[j]
        if acc > target:
            out[b] = top_i[j]
            return


@cuda.jit
def _greedy_cuda(logits, out):
    """One block per row: each thread keeps the best of a strided slice, then a tree reduction.
    Strict > skips NaN and -inf; equal logits keep the lower token id, as the references do."""
    b = cuda.blockIdx.x
    t = cuda.threadIdx.x
    sv = cuda.shared.array(GREEDY_THREADS, np.float64)
    si = cuda.shared.array(GREEDY_THREADS, np.int64)
    best_v = -np.inf
    best_i = -1
    for c in range(t, logits.shape[1], GREEDY_THREADS):
        v = np.float64(logits[b, c])
        if v > best_v:
            best_v = v
            best_i = c
    sv[t] = best_v
    si[t] = best_i
    cuda.syncthreads()
    half = GREEDY_THREADS // 2
    while half > 0:
        if t < half:
            ov = sv[t + half]
            oi = si[t + half]
            if oi >= 0 and (si[t] < 0 or ov > sv[t] or (ov == sv[t] and oi < si[t])):
                sv[t] = ov
                si[t] = oi
        cuda.syncthreads()
        half //= 2
    if t == 0:
        out[b] = si[0]


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
        top_k = min(top_k, d.shape[1])
        out = device_empty(logits, (d.shape[0],), np.int64) if out is None else out
        d_out = as_device_array(out)
        stream = launch_stream(logits)
        if temperature == 0:
            _greedy_cuda[d.shape[0], GREEDY_THREADS, stream](d, d_out)
        elif on_device(step):
            args = (d, float(temperature), top_k, float(top_p), seed_u, as_device_array(step), d_out)
            _sample_cuda_steps[d.shape[0], ROW_THREADS, stream](*args)
        else:
            args = (d, float(temperature), top_k, float(top_p), seed_u, np.uint64(step), d_out)
            _sample_cuda[d.shape[0], ROW_THREADS, stream](*args)
        return out
    logits = np.ascontiguousarray(logits, np.float32)
    out = np.empty(logits.shape[0], np.int64)
    _sample(logits, float(temperature), int(top_k), float(top_p), seed_u, int(step), out)
    return out
