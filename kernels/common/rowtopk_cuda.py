"""Row top-k on the GPU in two passes: softmax_topk, greedy and top-k/top-p sampling share it.

One block per row left most of a GPU idle (64 rows of a 152,064-token vocabulary ran on 64 of 132
SMs, 32 threads each). Here:

- pass 1: grid (rows, partitions). Each block scans a contiguous slice of its row: every thread
  keeps the top-k of its strided elements (a sorted buffer in registers/local memory, touched only
  when a value beats its k-th), its count of +inf, and an online softmax sum over the finite values
  (max and sum rescaled as the max grows). The block then reduces max/sum/count with warp shuffles
  and extracts the slice's top-k in k rounds of a block-wide "best head" reduction (each thread's
  buffer is sorted, so the best remaining candidate of the block is the best of the threads' heads).
- pass 2: one block per row merges the partitions' sorted candidate lists the same way, combines
  the partial sums, and finishes: probabilities (softmax_topk), the best token (greedy), or a draw
  from the k candidates with top-p applied to the candidate set (sample_tokens).

The ranking is the module-wide one (kernels/common/rowtopk.py): higher logit first, NaN last, ties to the
lower index; the results equal the NumPy references.

Under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM; tests/cuda, CI's only check of this code) the
kernels run this module's code, the block reductions included, with one stand-in: the simulator
(numba-cuda 0.30) has no warp-level instruction (no `shfl_*_sync`, `syncwarp` or vote), so there
`_shfl_down2`, the one shuffle, exchanges through shared memory between two block barriers; the
reductions around it are the GPU's, warp by warp. PASS1_THREADS is the GPU's 256 in both; tests/cuda
lowers it to one warp (32) for speed, saying so, and runs 64 and 256 for the cross-warp steps.
`SIM_SHUFFLES = False` swaps the two block reductions for a plain scan of the block's entries, for
speed only: tests/cuda/conftest.py sets it only in a test marked `sim_scan_for_speed`, and every
thread's reductions are logged in `SIM_REDUCTIONS` ("shuffle" or "scan"), so an unmarked test that
ran a scan fails. The simulator checks results: ranking, ties, NaN and inf, the online softmax,
partitions and their merge, the draw; it runs a Python thread per CUDA thread, interleaved anywhere
between barriers, so a missing barrier shows only when an interleaving happens to expose it. What
only a GPU shows: timing and occupancy; the shuffle instruction itself (the lanes in lockstep under
the full mask) and memory under real concurrency; numba-cuda's compilation and typing (the simulator
runs the Python source: math.floor typed as a float, found on an H100); the limits on registers,
local memory (MAX_K per thread) and shared memory.
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda

from kernels.common.device import as_device_array, device_empty, launch_stream
from kernels.common.draw import GOLDEN, draw, mix

MAX_K = 64
SIM = bool(config.ENABLE_CUDASIM)
SCRATCH = 256  # shared scratch per block: the most threads a block launches with
PASS1_THREADS = 256  # pass-1 threads per block, read at launch (tests/cuda lowers it under the simulator)
PASS2_THREADS_MAX = 128  # partitions per row at most (one list per pass-2 thread)
MIN_COLS_PER_BLOCK = 4096  # a pass-1 block scans at least this many columns (tests lower it)
FULL_MASK = 0xFFFFFFFF
_SMS: dict[int, int] = {}

MODE_SOFTMAX, MODE_GREEDY, MODE_SAMPLE = 0, 1, 2


# ------------------------------------------------------------------------------ warp primitives
if SIM:

    @cuda.jit(device=True)
    def _shfl_down2(a, b, off, sa, sb):
        """Lane t gets lane t + off's (a, b) (its own past the warp's end), through shared memory."""
        t = cuda.threadIdx.x
        sa[t] = a
        sb[t] = b
        cuda.syncthreads()
        inside = t % 32 + off < 32
        ra = sa[t + off] if inside else a
        rb = sb[t + off] if inside else b
        cuda.syncthreads()
        return ra, rb

else:

    @cuda.jit(device=True)
    def _shfl_down2(a, b, off, sa, sb):
        """Lane t gets lane t + off's (a, b) (its own past the warp's end)."""
        return cuda.shfl_down_sync(FULL_MASK, a, off), cuda.shfl_down_sync(FULL_MASK, b, off)


@cuda.jit(device=True)
def _better(v1, i1, v2, i2):
    """(v1, i1) ranks before (v2, i2): i < 0 is an empty slot (last), NaN after every number, equal
    values to the lower index."""
    if i1 < 0:
        return False
    if i2 < 0:
        return True
    if math.isnan(v1):
        return math.isnan(v2) and i1 < i2
    if math.isnan(v2):
        return True
    return v1 > v2 or (v1 == v2 and i1 < i2)


@cuda.jit(device=True)
def _warp_best(v, i, sv, si):
    off = 16
    while off > 0:
        ov, oi = _shfl_down2(v, i, off, sv, si)
        if _better(ov, oi, v, i):
            v = ov
            i = oi
        off //= 2
    return v, i


@cuda.jit(device=True)
def _block_best_shfl(v, i, sv, si, wv, wi):
    """The best (value, index) of the block, on every thread. sv/si: shared [blockDim] scratch
    (simulator shuffles); wv/wi: shared [32], one slot per warp. Every thread must call it."""
    t = cuda.threadIdx.x
    v, i = _warp_best(v, i, sv, si)
    if t % 32 == 0:
        wv[t // 32] = v
        wi[t // 32] = i
    cuda.syncthreads()
    lane = t % 32
    if lane < cuda.blockDim.x // 32:
        v = wv[lane]
        i = wi[lane]
    else:
        v = np.float32(-np.inf)
        i = np.int32(-1)
    v, i = _warp_best(v, i, sv, si)  # every warp reduces the warps' results (no warp-only branch)
    if t == 0:
        wv[0] = v
        wi[0] = i
    cuda.syncthreads()
    v = wv[0]
    i = wi[0]
    cuda.syncthreads()
    return v, i


@cuda.jit(device=True)
def _combine(m, s, om, os):
    """Two online-softmax partials (finite max, sum of exp(v - max)) as one."""
    if om > m:
        return om, s * math.exp(m - om) + os
    if om > -np.inf:
        return m, s + os * math.exp(om - m)
    return m, s


@cuda.jit(device=True)
def _block_softmax_stats_shfl(m, s, n, sm, ss, sn, wm, ws, wn):
    """(finite max, sum, +inf count) of the block on every thread. s*: shared [blockDim]
    (simulator), w*: shared [32]."""
    t = cuda.threadIdx.x
    for step in range(2):  # within each warp, then across the warps' results
        off = 16
        while off > 0:
            om, os = _shfl_down2(m, s, off, sm, ss)
            on, _ = _shfl_down2(n, n, off, sn, sn)
            m, s = _combine(m, s, om, os)
            n += on
            off //= 2
        if step == 0:
            if t % 32 == 0:
                wm[t // 32] = m
                ws[t // 32] = s
                wn[t // 32] = n
            cuda.syncthreads()
            lane = t % 32
            if lane < cuda.blockDim.x // 32:
                m, s, n = wm[lane], ws[lane], wn[lane]
            else:
                m, s, n = np.float32(-np.inf), 0.0, np.int32(0)
            cuda.syncthreads()
    if t == 0:
        wm[0], ws[0], wn[0] = m, s, n
    cuda.syncthreads()
    m, s, n = wm[0], ws[0], wn[0]
    cuda.syncthreads()
    return m, s, n


if SIM:
    SIM_SHUFFLES = True  # False only in a test marked sim_scan_for_speed (tests/cuda/conftest.py): a plain scan
    SIM_REDUCTIONS: list[str] = []  # one entry per thread and block reduction, "shuffle" or "scan" (tests/cuda)

    @cuda.jit(device=True)
    def block_best(v, i, sv, si, wv, wi):
        """Simulator: the shuffle reduction itself, or with SIM_SHUFFLES False (for speed) the same
        result in two barriers (each thread scans the block's entries)."""
        if SIM_SHUFFLES:
            SIM_REDUCTIONS.append("shuffle")
            return _block_best_shfl(v, i, sv, si, wv, wi)
        SIM_REDUCTIONS.append("scan")
        t = cuda.threadIdx.x
        sv[t] = v
        si[t] = i
        cuda.syncthreads()
        for u in range(cuda.blockDim.x):
            if _better(sv[u], si[u], v, i):
                v, i = sv[u], si[u]
        cuda.syncthreads()
        return v, i

    @cuda.jit(device=True)
    def block_softmax_stats(m, s, n, sm, ss, sn, wm, ws, wn):
        if SIM_SHUFFLES:
            SIM_REDUCTIONS.append("shuffle")
            return _block_softmax_stats_shfl(m, s, n, sm, ss, sn, wm, ws, wn)
        SIM_REDUCTIONS.append("scan")
        t = cuda.threadIdx.x
        sm[t], ss[t], sn[t] = m, s, n
        cuda.syncthreads()
        m, s, n = np.float32(-np.inf), 0.0, 0
        for u in range(cuda.blockDim.x):
            m, s = _combine(m, s, sm[u], ss[u])
            n += sn[u]
        cuda.syncthreads()
        return m, s, n

else:
    block_best = _block_best_shfl
    block_softmax_stats = _block_softmax_stats_shfl


@cuda.jit(device=True)
def _insert(v, c, top_v, top_i, k):
    if _better(v, c, top_v[k - 1], top_i[k - 1]):
        j = k - 1
        while j > 0 and _better(v, c, top_v[j - 1], top_i[j - 1]):
            top_v[j] = top_v[j - 1]
            top_i[j] = top_i[j - 1]
            j -= 1
        top_v[j] = v
        top_i[j] = c


# ------------------------------------------------------------------------------ pass 1
@cuda.jit
def _pass1(logits, k, chunk, cand_v, cand_i, part_m, part_s, part_n):
    b = cuda.blockIdx.x  # rows on grid x (up to 2^31 - 1), partitions on y (at most 128)
    p = cuda.blockIdx.y
    t = cuda.threadIdx.x
    sv = cuda.shared.array(SCRATCH, np.float32)
    si = cuda.shared.array(SCRATCH, np.int32)
    sf = cuda.shared.array(SCRATCH, np.float64)
    wv = cuda.shared.array(32, np.float32)
    wi = cuda.shared.array(32, np.int32)
    wf = cuda.shared.array(32, np.float64)
    top_v = cuda.local.array(MAX_K, np.float32)
    top_i = cuda.local.array(MAX_K, np.int32)
    for j in range(k):
        top_v[j] = -np.inf
        top_i[j] = -1
    m = np.float32(-np.inf)  # max of the finite values seen
    s = 0.0  # sum of exp(v - m) over them
    n_inf = np.int32(0)
    start = p * chunk
    stop = min(start + chunk, logits.shape[1])
    for c in range(start + t, stop, cuda.blockDim.x):
        v = np.float32(logits[b, c])
        if v == np.inf:
            n_inf += 1
        elif v > m:
            s = s * math.exp(m - v) + 1.0
            m = v
        elif v > -np.inf:
            s += math.exp(np.float32(v - m))
        if _better(v, np.int32(c), top_v[k - 1], top_i[k - 1]):
            _insert(v, np.int32(c), top_v, top_i, k)
    m, s, n_inf = block_softmax_stats(m, s, n_inf, sv, sf, si, wv, wf, wi)
    h = 0
    for r in range(k):  # the slice's top-k: the best of the threads' heads, k times
        hv = top_v[h] if h < k else np.float32(-np.inf)
        hi = top_i[h] if h < k else np.int32(-1)
        bv, bi = block_best(hv, hi, sv, si, wv, wi)
        if bi >= 0 and bi == hi:
            h += 1
        if t == 0:
            cand_v[b, p, r] = bv
            cand_i[b, p, r] = bi
    if t == 0:
        part_m[b, p] = m
        part_s[b, p] = s
        part_n[b, p] = n_inf


# ------------------------------------------------------------------------------ pass 2
@cuda.jit(device=True)
def _merge(cand_v, cand_i, part_m, part_s, part_n, k, top_v, top_i, sv, si, sf, wv, wi, wf):
    """Thread t merges partition t's list; thread 0 ends with the row's top-k in (top_v, top_i).
    Returns the row's (finite max, sum, +inf count) on every thread."""
    b = cuda.blockIdx.x
    t = cuda.threadIdx.x
    n_parts = cand_v.shape[1]
    mine = t < n_parts
    m = np.float32(part_m[b, t]) if mine else np.float32(-np.inf)
    s = part_s[b, t] if mine else 0.0
    n = np.int32(part_n[b, t]) if mine else np.int32(0)
    m, s, n = block_softmax_stats(m, s, n, sv, sf, si, wv, wf, wi)
    h = 0
    for r in range(k):
        hv = cand_v[b, t, h] if mine and h < k else np.float32(-np.inf)
        hi = cand_i[b, t, h] if mine and h < k else np.int32(-1)
        bv, bi = block_best(hv, hi, sv, si, wv, wi)
        if bi >= 0 and bi == hi:
            h += 1
        if t == 0:
            top_v[r] = bv
            top_i[r] = bi
    return m, s, n


_mix_dev = cuda.jit(device=True)(mix.py_func)
_draw_dev = cuda.jit(device=True)(draw.py_func)


@cuda.jit(device=True)
def _uniform_dev(seed, row, step):
    z = _mix_dev(_mix_dev(seed + np.uint64(GOLDEN) * np.uint64(row + 1)) + step)
    return np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@cuda.jit(device=True)
def _finish(mode, k, m, s, n_inf, top_v, top_i, temperature, top_p, seed, step, probs, idx, out):
    """Thread 0 of pass 2: probabilities, the greedy token, or a draw (as the NumPy references)."""
    b = cuda.blockIdx.x
    if mode == MODE_SOFTMAX:
        for j in range(k):
            idx[b, j] = top_i[j]
            v = top_v[j]
            if n_inf > 0:
                probs[b, j] = 1.0 / n_inf if v == np.inf else 0.0
            elif m == -np.inf:
                probs[b, j] = np.nan
            else:
                probs[b, j] = 0.0 if math.isnan(v) else math.exp(np.float64(v) - np.float64(m)) / s
        return
    best = top_v[0]
    if top_i[0] < 0 or math.isnan(best) or best == -np.inf:
        out[b] = -1
        return
    if mode == MODE_GREEDY:
        out[b] = top_i[0]
        return
    n = 0
    while n < k and top_i[n] >= 0 and not math.isnan(top_v[n]):
        n += 1
    e = cuda.local.array(MAX_K, np.float64)
    out[b] = _draw_dev(top_v, top_i, n, temperature, top_p, _uniform_dev(seed, b, step), e)


@cuda.jit(device=True)
def _pass2_body(cand_v, cand_i, part_m, part_s, part_n, k, mode, temperature, top_p, seed, step, probs, idx, out):
    sv = cuda.shared.array(SCRATCH, np.float32)
    si = cuda.shared.array(SCRATCH, np.int32)
    sf = cuda.shared.array(SCRATCH, np.float64)
    wv = cuda.shared.array(32, np.float32)
    wi = cuda.shared.array(32, np.int32)
    wf = cuda.shared.array(32, np.float64)
    top_v = cuda.local.array(MAX_K, np.float32)
    top_i = cuda.local.array(MAX_K, np.int32)
    m, s, n = _merge(cand_v, cand_i, part_m, part_s, part_n, k, top_v, top_i, sv, si, sf, wv, wi, wf)
    if cuda.threadIdx.x == 0:
        _finish(mode, k, m, s, n, top_v, top_i, temperature, top_p, seed, step, probs, idx, out)


@cuda.jit
def _pass2(cand_v, cand_i, part_m, part_s, part_n, k, mode, temperature, top_p, seed, step, probs, idx, out):
    _pass2_body(cand_v, cand_i, part_m, part_s, part_n, k, mode, temperature, top_p, seed, step, probs, idx, out)


@cuda.jit
def _pass2_steps(cand_v, cand_i, part_m, part_s, part_n, k, mode, temperature, top_p, seed, steps, probs, idx, out):
    """As _pass2 with the sampling step read from device memory (a CUDA graph replays one launch)."""
    step = np.uint64(steps[0])
    _pass2_body(cand_v, cand_i, part_m, part_s, part_n, k, mode, temperature, top_p, seed, step, probs, idx, out)


# ------------------------------------------------------------------------------ host side
def partitions(rows: int, cols: int) -> int:
    """Pass-1 blocks per row: enough blocks for two per SM, each at least MIN_COLS_PER_BLOCK columns,
    at most PASS2_THREADS_MAX (pass 2 gives each partition a thread)."""
    dev = cuda.get_current_device()
    key = getattr(dev, "id", 0)
    if key not in _SMS:
        _SMS[key] = int(getattr(dev, "MULTIPROCESSOR_COUNT", 16))
    want = -(-2 * _SMS[key] // rows)
    most = -(-cols // MIN_COLS_PER_BLOCK)
    return max(1, min(want, most, PASS2_THREADS_MAX))


def row_topk_device(
    logits,
    k: int,
    mode: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed=0,
    step=0,
    probs=None,
    idx=None,
    out=None,
) -> None:
    """Launch both passes on `logits` [B, V] (a CUDA array) on its stream. MODE_SOFTMAX fills
    probs [B, k] / idx [B, k]; MODE_GREEDY and MODE_SAMPLE fill out [B]. `step`: an int or a
    one-element int64 device array."""
    d = as_device_array(logits)
    rows, cols = d.shape
    n_parts = partitions(rows, cols)
    chunk = -(-cols // n_parts)
    n_parts = -(-cols // chunk)  # no empty partition
    cand_v = device_empty(logits, (rows, n_parts, k), np.float32)
    cand_i = device_empty(logits, (rows, n_parts, k), np.int32)
    part_m = device_empty(logits, (rows, n_parts), np.float32)
    part_s = device_empty(logits, (rows, n_parts), np.float64)
    part_n = device_empty(logits, (rows, n_parts), np.int32)
    stream = launch_stream(logits)
    c_v, c_i, p_m, p_s, p_n = (as_device_array(x) for x in (cand_v, cand_i, part_m, part_s, part_n))
    _pass1[(rows, n_parts), PASS1_THREADS, stream](d, k, chunk, c_v, c_i, p_m, p_s, p_n)
    threads = 32 * -(-n_parts // 32)
    d_probs = as_device_array(probs) if probs is not None else c_v[:, 0, :]  # a placeholder where the mode
    d_idx = as_device_array(idx) if idx is not None else c_i[:, 0, :]  # writes no probabilities
    d_out = as_device_array(out) if out is not None else c_i[:, 0, 0]
    args = (c_v, c_i, p_m, p_s, p_n, k, mode, float(temperature), float(top_p), np.uint64(seed))
    if hasattr(step, "copy_to_host") or hasattr(step, "__cuda_array_interface__"):
        _pass2_steps[rows, threads, stream](*args, as_device_array(step), d_probs, d_idx, d_out)
    else:
        _pass2[rows, threads, stream](*args, np.uint64(step), d_probs, d_idx, d_out)


__all__ = ["MAX_K", "MODE_GREEDY", "MODE_SAMPLE", "MODE_SOFTMAX", "block_best", "partitions", "row_topk_device"]
