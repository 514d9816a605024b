"""float32 -> IEEE float16 bits, round to nearest even, for Numba CPU code (which has no float16)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(inline="always")
def f32_bits_to_f16_bits(u: np.uint32) -> np.uint16:
    """The float16 bit pattern nearest to the float32 whose bits are `u` (as numpy's astype)."""
    sign = (u >> np.uint32(16)) & np.uint32(0x8000)
    a = u & np.uint32(0x7FFFFFFF)
    if a >= np.uint32(0x7F800000):  # inf or NaN
        return np.uint16(sign | np.uint32(0x7C00) | (np.uint32(0x200) if a > 0x7F800000 else 0))
    if a >= np.uint32(0x477FF000):  # rounds to >= 65520: overflow to inf
        return np.uint16(sign | np.uint32(0x7C00))
    if a >= np.uint32(0x38800000):  # a normal half
        r = a - np.uint32(0x38000000)
        r = r + np.uint32(0xFFF) + ((r >> np.uint32(13)) & np.uint32(1))
        return np.uint16(sign | (r >> np.uint32(13)))
    if a < np.uint32(0x33000000):  # below half the smallest subnormal: zero
        return np.uint16(sign)
    e = a >> np.uint32(23)
    m = (a & np.uint32(0x7FFFFF)) | np.uint32(0x800000)
    shift = np.uint32(126) - e
    q = m >> shift
    rem = m & ((np.uint32(1) << shift) - np.uint32(1))
    half = np.uint32(1) << (shift - np.uint32(1))
    if rem > half or (rem == half and (q & np.uint32(1))):
        q += np.uint32(1)
    return np.uint16(sign | q)


@njit(cache=True)
def to_f16_bits(src: np.ndarray, dst: np.ndarray) -> None:
    """dst[i] = float16 bits of src[i]; src float32 1-D, dst uint16 1-D of the same length."""
    bits = src.view(np.uint32)
    for i in range(src.size):
        dst[i] = f32_bits_to_f16_bits(bits[i])
