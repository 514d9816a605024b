"""Bit conversions between float32, bf16 and float16 for Numba CPU code (which has neither 16-bit float).

bf16 values travel as their uint16 bit patterns (`torch_bf16.view(torch.int16)`), float16 ones as
uint16 too; every conversion here is exact or rounds to nearest even, as numpy's and torch's casts do.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def bits_to_f32(typingctx, bits):
    """The float32 whose bit pattern is the uint32 `bits`."""
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def f32_to_bits(typingctx, value):
    """The bit pattern of the float32 `value`, as uint32."""
    sig = types.uint32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def bf16_to_f32(typingctx, bits):
    """The float32 whose upper 16 bits are `bits` (bf16 is float32's top half): zero-extend, shift, bitcast."""
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):
        v = builder.shl(builder.zext(args[0], ir.IntType(32)), ir.Constant(ir.IntType(32), 16))
        return builder.bitcast(v, ir.FloatType())

    return sig, codegen


@njit(inline="always")
def f32_to_bf16_bits(v):
    """float32 -> bf16 bits, round to nearest even (NaN stays NaN)."""
    u = f32_to_bits(v)
    if (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):
        return np.uint16((u >> np.uint32(16)) | np.uint32(0x40))
    return np.uint16((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))


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


def bf16_bits_to_f32_ref(bits: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (uint16) as float32: the NumPy reference of `bf16_to_f32`."""
    return (bits.astype(np.uint32) << 16).view(np.float32)
