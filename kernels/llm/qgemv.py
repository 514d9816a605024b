"""GGUF block-quantized weights read as stored: matrix-vector products and dequantization (CPU, Numba).

A GGUF weight [N, K] is N rows of K/B blocks; each block holds B weights as small integers with
their scales (ggml's layouts, `BLOCKS`). At decode a matmul has a few rows of activations and reads
the whole weight once, so its speed is the bytes it reads: Q4_1 is 5 bits per weight against
bf16's 16. `qlinear_rows` computes y = x @ W^T straight from the blocks: the integers are widened
to float32 next to the activations, multiplied, summed and scaled once per block (or sub-block);
no dequantized copy of W is ever written.

Layout (`pack`): the blocks are the file's bytes, interleaved over 64 rows: byte t of block b of
row 64g + r sits at [g, b, t, r] (rows padded with zero bytes to a multiple of 64). The bytes and
their count are the file's; only their order changes, as llama.cpp's own CPU repacking does
(block_q4_0x8). Every loop then runs over 64 rows at once in SIMD lanes, with no horizontal sums
and no gathers: on the reference CPU (a scratch benchmark, one row x a 32768 x 512 weight, not yet
a `modelpower kernels` row) the first version, one row at a time over 16- and 32-wide blocks,
reached 4 G weights/s for Q4_1, this one 30.

- Activations are float32 [M, K]; accumulation is float32 with reassociation allowed (the order of
  the sum is the compiler's), but NaN and inf are not assumed away: a NaN or inf scale or input
  propagates as in a plain dot product.
- Scales are float16 (`_half`, exact: subnormals, inf and NaN kept) or, in the K-quants, 6-bit
  integers under float16 super-scales, as ggml defines them.
- `dequantize_t` writes W^T in bf16 (prefill's tiles, for torch's GEMM); `dequantize_rows` writes
  chosen rows in float32 (the embedding lookup).

The reference is the `gguf` package's own dequantization (`qlinear_rows_ref`, `dequantize_ref`).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels.common.bits import bits_to_f32, f32_to_bf16_bits

# type name -> (weights per block, bytes per block), as ggml's GGML_QUANT_SIZES
BLOCKS = {
    "Q8_0": (32, 34),
    "Q4_0": (32, 18),
    "Q4_1": (32, 20),
    "Q4_K": (256, 144),
    "Q5_K": (256, 176),
    "Q6_K": (256, 210),
}
LANES = 64  # rows interleaved: a 16-wide AVX-512 loop runs 4 times per byte, with no remainder
FM = {"contract", "reassoc", "nsz", "arcp", "afn"}  # fastmath without nnan/ninf: NaN and inf propagate


@njit(inline="always")
def _half(lo, hi):
    """The float16 whose little-endian bytes are lo, hi, as float32: exact for every value (the
    exponent rebased by a multiply by 2^112 covers subnormals; inf and NaN are selected apart)."""
    h = np.uint32(lo) | (np.uint32(hi) << np.uint32(8))
    o = (h & np.uint32(0x7FFF)) << np.uint32(13)
    v = bits_to_f32(o) * np.float32(5.192296858534828e33)
    if (h & np.uint32(0x7C00)) == np.uint32(0x7C00):
        v = bits_to_f32(o | np.uint32(0x7F800000))
    return -v if h & np.uint32(0x8000) else v


@njit(inline="always")
def _i8(v):
    """A byte read as int8, as float32."""
    return np.float32(np.int32(v ^ np.uint8(0x80)) - np.int32(128))


@njit(inline="always")
def _u(v):
    """A small unsigned integer as float32 (through int32, so the vector lanes stay 32 bits wide)."""
    return np.float32(np.int32(v))


@njit(inline="always")
def _scale_min_k4(blk, j, r):
    """Q4_K/Q5_K: the 6-bit scale and min of sub-block j, lane r (ggml's get_scale_min_k4 on the 12
    scale bytes at blk[4:16])."""
    if j < 4:
        return _u(blk[4 + j, r] & 63), _u(blk[8 + j, r] & 63)
    sc = (blk[8 + j, r] & 0xF) | ((blk[j, r] >> 6) << 4)
    mn = (blk[8 + j, r] >> 4) | ((blk[4 + j, r] >> 6) << 4)
    return _u(sc), _u(mn)


@njit(inline="always")
def _q6(lo, hi, shift):
    """Q6_K: the 6-bit value from 4 low bits and 2 high bits (at `shift` of `hi`), minus 32."""
    return np.float32(np.int32((lo & 15) | (((hi >> shift) & 3) << 4)) - np.int32(32))


# ---- matrix-vector products: prange over groups of 64 rows, every inner loop over the 64 lanes ---


@njit(parallel=True, fastmath=FM, cache=True)
def mv_q8_0(x, p, out):
    G, nb, L = p.shape[0], p.shape[1], p.shape[3]
    signed = p.view(np.int8)  # the int8 quants, sign-extended by the load itself
    for g in prange(G):
        acc, tot = np.empty(L, np.float32), np.empty(L, np.float32)
        for m in range(x.shape[0]):
            xm = x[m]
            tot[:] = 0.0
            for b in range(nb):
                blk = p[g, b]
                acc[:] = 0.0
                for j in range(32):
                    xv = xm[b * 32 + j]
                    q = signed[g, b, 2 + j]
                    for r in range(L):
                        acc[r] += np.float32(q[r]) * xv
                for r in range(L):
                    tot[r] += _half(blk[0, r], blk[1, r]) * acc[r]
            o = out[m, g * L : (g + 1) * L]
            for r in range(L):
                o[r] = tot[r]


@njit(cache=True)
def _sums32(x):
    """Sums of x [M, K] over 32-wide blocks, [M, K / 32] (the offset and min terms)."""
    xs = np.empty((x.shape[0], x.shape[1] // 32), np.float32)
    for m in range(x.shape[0]):
        for b in range(xs.shape[1]):
            xs[m, b] = x[m, b * 32 : b * 32 + 32].sum()
    return xs


@njit(parallel=True, fastmath=FM, cache=True)
def mv_q4(x, p, out, with_min):
    """Q4_0 (with_min False: value (q - 8) d) and Q4_1 (value q d + m)."""
    xs = _sums32(x)
    G, nb, L = p.shape[0], p.shape[1], p.shape[3]
    q0 = 4 if with_min else 2
    for g in prange(G):
        acc, tot = np.empty(L, np.float32), np.empty(L, np.float32)
        for m in range(x.shape[0]):
            xm = x[m]
            tot[:] = 0.0
            for b in range(nb):
                blk = p[g, b]
                acc[:] = 0.0
                for j in range(0, 16, 2):  # two bytes per pass: half the accumulator traffic
                    k = b * 32 + j
                    xl, xh, yl, yh = xm[k], xm[k + 16], xm[k + 1], xm[k + 17]
                    q, u = blk[q0 + j], blk[q0 + j + 1]
                    for r in range(L):
                        acc[r] += _u(q[r] & 15) * xl + _u(q[r] >> 4) * xh + _u(u[r] & 15) * yl + _u(u[r] >> 4) * yh
                xsb = xs[m, b]
                if with_min:
                    for r in range(L):
                        tot[r] += _half(blk[0, r], blk[1, r]) * acc[r] + _half(blk[2, r], blk[3, r]) * xsb
                else:
                    for r in range(L):
                        tot[r] += _half(blk[0, r], blk[1, r]) * (acc[r] - np.float32(8.0) * xsb)
            o = out[m, g * L : (g + 1) * L]
            for r in range(L):
                o[r] = tot[r]


@njit(inline="always")
def _four_rows(x):
    """Rows 0..3 of x [M <= 4, K], the last repeated where M < 4 (its sums are computed twice, kept once)."""
    m = x.shape[0] - 1
    return x[0], x[min(1, m)], x[min(2, m)], x[min(3, m)]


@njit(parallel=True, fastmath=FM, cache=True)
def mv_q8_0_multi(x, p, out):
    """`mv_q8_0` for 2 to 4 rows of x in one pass: each weight is widened once for every row
    (measured on the reference CPU, 9,728 x 896: 1.3x (Q4_1) and 1.4x (Q8_0) the row-by-row kernel at 4 rows)."""
    G, nb, L, M = p.shape[0], p.shape[1], p.shape[3], x.shape[0]
    signed = p.view(np.int8)
    x0, x1, x2, x3 = _four_rows(x)
    for g in prange(G):
        acc, tot = np.empty((4, L), np.float32), np.zeros((4, L), np.float32)
        a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
        for b in range(nb):
            blk = p[g, b]
            acc[:] = 0.0
            for j in range(32):
                k = b * 32 + j
                u0, u1, u2, u3 = x0[k], x1[k], x2[k], x3[k]
                q = signed[g, b, 2 + j]
                if M == 2:
                    for r in range(L):
                        v = np.float32(q[r])
                        a0[r] += v * u0
                        a1[r] += v * u1
                else:
                    for r in range(L):
                        v = np.float32(q[r])
                        a0[r] += v * u0
                        a1[r] += v * u1
                        a2[r] += v * u2
                        a3[r] += v * u3
            for i in range(M):
                a, t = acc[i], tot[i]
                for r in range(L):
                    t[r] += _half(blk[0, r], blk[1, r]) * a[r]
        for i in range(M):
            o, t = out[i, g * L : (g + 1) * L], tot[i]
            for r in range(L):
                o[r] = t[r]


@njit(parallel=True, fastmath=FM, cache=True)
def mv_q4_multi(x, p, out, with_min):
    """`mv_q4` for 2 to 4 rows of x in one pass (as `mv_q8_0_multi`)."""
    xs = _sums32(x)
    G, nb, L, M = p.shape[0], p.shape[1], p.shape[3], x.shape[0]
    q0 = 4 if with_min else 2
    x0, x1, x2, x3 = _four_rows(x)
    for g in prange(G):
        acc, tot = np.empty((4, L), np.float32), np.zeros((4, L), np.float32)
        a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
        for b in range(nb):
            blk = p[g, b]
            acc[:] = 0.0
            for j in range(16):
                k = b * 32 + j
                l0, h0, l1, h1 = x0[k], x0[k + 16], x1[k], x1[k + 16]
                l2, h2, l3, h3 = x2[k], x2[k + 16], x3[k], x3[k + 16]
                q = blk[q0 + j]
                if M == 2:
                    for r in range(L):
                        lo, hi = _u(q[r] & 15), _u(q[r] >> 4)
                        a0[r] += lo * l0 + hi * h0
                        a1[r] += lo * l1 + hi * h1
                else:
                    for r in range(L):
                        lo, hi = _u(q[r] & 15), _u(q[r] >> 4)
                        a0[r] += lo * l0 + hi * h0
                        a1[r] += lo * l1 + hi * h1
                        a2[r] += lo * l2 + hi * h2
                        a3[r] += lo * l3 + hi * h3
            for i in range(M):
                a, t, s = acc[i], tot[i], xs[i, b]
                if with_min:
                    for r in range(L):
                        t[r] += _half(blk[0, r], blk[1, r]) * a[r] + _half(blk[2, r], blk[3, r]) * s
                else:
                    for r in range(L):
                        t[r] += _half(blk[0, r], blk[1, r]) * (a[r] - np.float32(8.0) * s)
        for i in range(M):
            o, t = out[i, g * L : (g + 1) * L], tot[i]
            for r in range(L):
                o[r] = t[r]


@njit(parallel=True, fastmath=FM, cache=True)
def mv_qk(x, p, out, five):
    """Q4_K (five False) and Q5_K (five True): 8 sub-blocks of 32 with 6-bit scales and mins."""
    xs = _sums32(x)
    G, nb, L = p.shape[0], p.shape[1], p.shape[3]
    qs0 = 48 if five else 16
    for g in prange(G):
        a1, a2 = np.empty(L, np.float32), np.empty(L, np.float32)
        sc, mn = np.empty((8, L), np.float32), np.empty((8, L), np.float32)
        tot = np.empty(L, np.float32)
        for m in range(x.shape[0]):
            xm = x[m]
            tot[:] = 0.0
            for b in range(nb):
                blk = p[g, b]
                # the block's head first, in order: d x scale and dmin x min of the 8 sub-blocks, per lane
                for r in range(L):
                    d, dmin = _half(blk[0, r], blk[1, r]), _half(blk[2, r], blk[3, r])
                    for i in range(8):
                        scale, low = _scale_min_k4(blk, i, r)
                        sc[i, r] = d * scale
                        mn[i, r] = dmin * low
                for c in range(4):
                    a1[:] = 0.0
                    a2[:] = 0.0
                    k0 = b * 256 + 64 * c
                    if five:
                        for j in range(32):
                            x1, x2 = xm[k0 + j], xm[k0 + 32 + j]
                            q, h = blk[qs0 + 32 * c + j], blk[16 + j]
                            for r in range(L):
                                hb = h[r] >> (2 * c)
                                a1[r] += _u((q[r] & 15) | ((hb & 1) << 4)) * x1
                                a2[r] += _u((q[r] >> 4) | ((hb & 2) << 3)) * x2
                    else:  # two bytes per pass: each accumulator updated once per byte, as in Q4_1
                        for j in range(0, 32, 2):
                            x1, x2, y1, y2 = xm[k0 + j], xm[k0 + 32 + j], xm[k0 + j + 1], xm[k0 + 33 + j]
                            q, u = blk[qs0 + 32 * c + j], blk[qs0 + 32 * c + j + 1]
                            for r in range(L):
                                a1[r] += _u(q[r] & 15) * x1 + _u(u[r] & 15) * y1
                                a2[r] += _u(q[r] >> 4) * x2 + _u(u[r] >> 4) * y2
                    xs1, xs2 = xs[m, k0 // 32], xs[m, k0 // 32 + 1]
                    s1, s2, n1, n2 = sc[2 * c], sc[2 * c + 1], mn[2 * c], mn[2 * c + 1]
                    for r in range(L):
                        tot[r] += s1[r] * a1[r] + s2[r] * a2[r] - n1[r] * xs1 - n2[r] * xs2
            o = out[m, g * L : (g + 1) * L]
            for r in range(L):
                o[r] = tot[r]


@njit(parallel=True, fastmath=FM, cache=True)
def mv_q6_k(x, p, out):
    G, nb, L = p.shape[0], p.shape[1], p.shape[3]
    for g in prange(G):
        a1, a2, a3, a4 = (
            np.empty(L, np.float32),
            np.empty(L, np.float32),
            np.empty(L, np.float32),
            np.empty(L, np.float32),
        )
        s_all, tot = np.empty(L, np.float32), np.empty(L, np.float32)
        for m in range(x.shape[0]):
            xm = x[m]
            tot[:] = 0.0
            for b in range(nb):
                blk = p[g, b]
                s_all[:] = 0.0
                for h in range(2):  # 128 weights: ql 64 bytes, qh 32 bytes, 8 int8 scales
                    ql, qh, sc, k0 = 64 * h, 128 + 32 * h, 192 + 8 * h, b * 256 + 128 * h
                    for gg in range(2):  # 16 weights share a scale
                        a1[:] = 0.0
                        a2[:] = 0.0
                        a3[:] = 0.0
                        a4[:] = 0.0
                        for j in range(16 * gg, 16 * gg + 16):
                            x1, x2, x3, x4 = xm[k0 + j], xm[k0 + 32 + j], xm[k0 + 64 + j], xm[k0 + 96 + j]
                            qa, qc, qe = blk[ql + j], blk[ql + 32 + j], blk[qh + j]
                            for r in range(L):
                                a1[r] += _q6(qa[r], qe[r], 0) * x1
                                a2[r] += _q6(qc[r], qe[r], 2) * x2
                                a3[r] += _q6(qa[r] >> 4, qe[r], 4) * x3
                                a4[r] += _q6(qc[r] >> 4, qe[r], 6) * x4
                        s = sc + gg
                        for r in range(L):
                            s_all[r] += (
                                _i8(blk[s, r]) * a1[r]
                                + _i8(blk[s + 2, r]) * a2[r]
                                + _i8(blk[s + 4, r]) * a3[r]
                                + _i8(blk[s + 6, r]) * a4[r]
                            )
                for r in range(L):
                    tot[r] += _half(blk[208, r], blk[209, r]) * s_all[r]
            o = out[m, g * L : (g + 1) * L]
            for r in range(L):
                o[r] = tot[r]


# ---- dequantization: a block of every lane at once, into tile [B, lanes] --------------------------


@njit(inline="always")
def _deq_tile(qid, blk, tile, sc):
    """Block `blk` [B bytes, lanes] as float32 values into tile [B, lanes] (qid: index in BLOCKS);
    sc: float32 scratch [16, lanes] for the lanes' scales."""
    L = blk.shape[1]
    if qid <= 2:  # Q8_0, Q4_0, Q4_1: d (and the offset) per lane
        d, mn = sc[0], sc[1]
        for r in range(L):
            d[r] = _half(blk[0, r], blk[1, r])
            mn[r] = _half(blk[2, r], blk[3, r]) if qid == 2 else np.float32(0.0)
        if qid == 0:
            for j in range(32):
                q, t = blk[2 + j], tile[j]
                for r in range(L):
                    t[r] = d[r] * _i8(q[r])
        else:
            q0 = 2 if qid == 1 else 4
            shift = np.float32(8.0) if qid == 1 else np.float32(0.0)  # Q4_0: (q - 8) d, as ggml (an inf d stays inf)
            for j in range(16):
                q, lo, hi = blk[q0 + j], tile[j], tile[16 + j]
                for r in range(L):
                    lo[r] = d[r] * (_u(q[r] & 15) - shift) + mn[r]
                    hi[r] = d[r] * (_u(q[r] >> 4) - shift) + mn[r]
    elif qid <= 4:  # Q4_K, Q5_K: d x scale and dmin x min of the 8 sub-blocks per lane
        for r in range(L):
            d, dmin = _half(blk[0, r], blk[1, r]), _half(blk[2, r], blk[3, r])
            for i in range(8):
                scale, low = _scale_min_k4(blk, i, r)
                sc[i, r] = d * scale
                sc[8 + i, r] = dmin * low
        qs0 = 16 if qid == 3 else 48
        for c in range(4):
            d1, m1, d2, m2 = sc[2 * c], sc[8 + 2 * c], sc[2 * c + 1], sc[9 + 2 * c]
            for j in range(32):
                q, lo, hi, hbits = blk[qs0 + 32 * c + j], tile[64 * c + j], tile[64 * c + 32 + j], blk[16 + j]
                if qid == 4:
                    for r in range(L):
                        hb = hbits[r] >> (2 * c)
                        lo[r] = d1[r] * _u((q[r] & 15) | ((hb & 1) << 4)) - m1[r]
                        hi[r] = d2[r] * _u((q[r] >> 4) | ((hb & 2) << 3)) - m2[r]
                else:
                    for r in range(L):
                        lo[r] = d1[r] * _u(q[r] & 15) - m1[r]
                        hi[r] = d2[r] * _u(q[r] >> 4) - m2[r]
    else:  # Q6_K: d x the 16 int8 scales per lane
        for r in range(L):
            d = _half(blk[208, r], blk[209, r])
            for i in range(16):
                sc[i, r] = d * _i8(blk[192 + i, r])
        for h in range(2):
            ql, qh = 64 * h, 128 + 32 * h
            for j in range(32):
                s = 8 * h + j // 16
                qa, qc, qe = blk[ql + j], blk[ql + 32 + j], blk[qh + j]
                i = 128 * h + j
                t1, t2, t3, t4 = tile[i], tile[i + 32], tile[i + 64], tile[i + 96]
                s1, s2, s3, s4 = sc[s], sc[s + 2], sc[s + 4], sc[s + 6]
                for r in range(L):
                    t1[r] = s1[r] * _q6(qa[r], qe[r], 0)
                    t2[r] = s2[r] * _q6(qc[r], qe[r], 2)
                    t3[r] = s3[r] * _q6(qa[r] >> 4, qe[r], 4)
                    t4[r] = s4[r] * _q6(qc[r] >> 4, qe[r], 6)


@njit(parallel=True, fastmath=FM, cache=True)
def _dequantize_rows(qid, size, p, rows, out):
    nb, L = p.shape[1], p.shape[3]
    for i in prange(rows.shape[0]):
        g, r = rows[i] // L, rows[i] % L
        tile, sc = np.empty((size, L), np.float32), np.empty((16, L), np.float32)
        y = out[i]
        for b in range(nb):
            _deq_tile(qid, p[g, b], tile, sc)
            for j in range(size):
                y[b * size + j] = tile[j, r]


@njit(parallel=True, fastmath=FM, cache=True)
def _dequantize_t(qid, size, p, out):
    """All rows into out [K, G * L] as bf16 bits (W transposed: a block's lanes land side by side)."""
    G, nb, L = p.shape[0], p.shape[1], p.shape[3]
    for g in prange(G):
        tile, sc = np.empty((size, L), np.float32), np.empty((16, L), np.float32)
        for b in range(nb):
            _deq_tile(qid, p[g, b], tile, sc)
            for i in range(size):
                o, v = out[b * size + i, g * L : (g + 1) * L], tile[i]
                for r in range(L):
                    o[r] = f32_to_bf16_bits(v[r])


# ---- public functions ----------------------------------------------------------------------------


def check_blocks(qtype: str, w: np.ndarray, k: int) -> None:
    """`w` must be the file's uint8 [N, K / B * block_bytes] for a weight of K columns in `qtype`."""
    if qtype not in BLOCKS:
        raise ValueError(f"no kernel for GGUF type {qtype} (kernels: {', '.join(BLOCKS)})")
    size, nbytes = BLOCKS[qtype]
    if k % size:
        raise ValueError(f"{qtype}: {k} columns are not a whole number of {size}-weight blocks")
    if w.dtype != np.uint8 or w.ndim != 2 or w.shape[1] != k // size * nbytes:
        raise ValueError(
            f"{qtype}: weights must be uint8 [N, {k // size * nbytes}] for {k} columns, got {w.dtype} {list(w.shape)}"
        )


def pack(w: np.ndarray, qtype: str, k: int) -> np.ndarray:
    """The file's blocks `w` [N, row bytes] interleaved over `LANES` rows: [ceil(N / 64), K / B, block
    bytes, 64] (padding rows are zero bytes: value 0 in every type)."""
    check_blocks(qtype, w, k)
    n, nbytes = w.shape[0], BLOCKS[qtype][1]
    groups = -(-n // LANES)
    padded = np.zeros((groups * LANES, w.shape[1]), np.uint8)
    padded[:n] = w
    return np.ascontiguousarray(padded.reshape(groups, LANES, -1, nbytes).transpose(0, 2, 3, 1))


def unpack(p: np.ndarray, n: int) -> np.ndarray:
    """The file's layout [N, row bytes] back from `pack`'s."""
    g, nb, nbytes, lanes = p.shape
    return np.ascontiguousarray(p.transpose(0, 3, 1, 2).reshape(g * lanes, nb * nbytes)[:n])


def _check_packed(p: np.ndarray, qtype: str, k: int) -> None:
    if qtype not in BLOCKS:
        raise ValueError(f"no kernel for GGUF type {qtype} (kernels: {', '.join(BLOCKS)})")
    size, nbytes = BLOCKS[qtype]
    if p.dtype != np.uint8 or p.ndim != 4 or p.shape[1:] != (k // size, nbytes, LANES) or k % size:
        raise ValueError(
            f"{qtype}: packed weights must be uint8 [G, {k // size}, {nbytes}, {LANES}] for {k} "
            f"columns, got {p.dtype} {list(p.shape)}"
        )
    if not p.flags.c_contiguous:
        raise ValueError("packed weights must be C-contiguous")


def qlinear_into(x: np.ndarray, p: np.ndarray, qtype: str, out: np.ndarray) -> None:
    """`qlinear_rows` without its checks, into out float32 [M, padded n]: the decode hot path, for
    callers that checked the weight once (`models.llm_linear.QuantLinear`)."""
    multi = 2 <= x.shape[0] <= 4
    if qtype == "Q4_1" or qtype == "Q4_0":
        (mv_q4_multi if multi else mv_q4)(x, p, out, qtype == "Q4_1")
    elif qtype == "Q8_0":
        (mv_q8_0_multi if multi else mv_q8_0)(x, p, out)
    elif qtype == "Q6_K":
        mv_q6_k(x, p, out)
    else:
        mv_qk(x, p, out, qtype == "Q5_K")


def qlinear_rows(x: np.ndarray, p: np.ndarray, qtype: str, n: int) -> np.ndarray:
    """x [M, K] float32 times the `pack`ed `qtype` weight of `n` rows, transposed: [M, n] float32 (a
    view of an [M, padded n] array when n is not a multiple of 64). Meant for a few rows of x (decode)."""
    if x.ndim != 2 or x.dtype != np.float32:
        raise ValueError(f"qlinear_rows: x must be float32 [M, K], got {x.dtype} {list(x.shape)}")
    _check_packed(p, qtype, x.shape[1])
    if not 0 < n <= p.shape[0] * LANES:
        raise ValueError(f"qlinear_rows: {n} rows do not fit {p.shape[0]} groups of {LANES}")
    out = np.empty((x.shape[0], p.shape[0] * LANES), np.float32)
    qlinear_into(np.ascontiguousarray(x), p, qtype, out)
    return out[:, :n]


def dequantize_rows(p: np.ndarray, qtype: str, k: int, rows: np.ndarray) -> np.ndarray:
    """float32 [len(rows), K]: rows `rows` of the `pack`ed weight (the embedding lookup)."""
    _check_packed(p, qtype, k)
    rows = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= p.shape[0] * LANES):
        raise ValueError(f"dequantize_rows: a row index is outside [0, {p.shape[0] * LANES})")
    out = np.empty((rows.size, k), np.float32)
    _dequantize_rows(list(BLOCKS).index(qtype), BLOCKS[qtype][0], p, rows, out)
    return out


def dequantize_t(p: np.ndarray, qtype: str, k: int, n: int, out: np.ndarray | None = None) -> np.ndarray:
    """W^T of the `pack`ed weight as bf16 bits, uint16 [K, n] (a view of [K, padded n]): prefill's tile.
    `out`: a uint16 [K, padded n] buffer to reuse (a fresh one costs its page faults on every call)."""
    _check_packed(p, qtype, k)
    shape = (k, p.shape[0] * LANES)
    if out is None:
        out = np.empty(shape, np.uint16)
    elif out.shape != shape or out.dtype != np.uint16 or not out.flags.c_contiguous:
        raise ValueError(f"dequantize_t: out must be C-contiguous uint16 {shape}")
    _dequantize_t(list(BLOCKS).index(qtype), BLOCKS[qtype][0], p, out)
    return out[:, :n]


# ---- references ----------------------------------------------------------------------------------


def dequantize_ref(w: np.ndarray, qtype: str, k: int) -> np.ndarray:
    """The `gguf` package's dequantization of the blocks `w` [N, row bytes]: float32 [N, K]."""
    from gguf import GGMLQuantizationType  # the reference only: the kernels do not need the gguf package
    from gguf.quants import dequantize

    check_blocks(qtype, w, k)
    return np.asarray(dequantize(w, GGMLQuantizationType[qtype]), dtype=np.float32).reshape(w.shape[0], k)


def qlinear_rows_ref(x: np.ndarray, w: np.ndarray, qtype: str) -> np.ndarray:
    """NumPy reference: x @ dequantize_ref(w).T with float64 accumulation (`w` in the file's layout)."""
    wf = dequantize_ref(w, qtype, x.shape[1]).astype(np.float64)
    with np.errstate(all="ignore"):
        return (x.astype(np.float64) @ wf.T).astype(np.float32)


__all__ = [
    "BLOCKS",
    "LANES",
    "check_blocks",
    "dequantize_ref",
    "dequantize_rows",
    "dequantize_t",
    "pack",
    "qlinear_into",
    "qlinear_rows",
    "qlinear_rows_ref",
    "unpack",
]
