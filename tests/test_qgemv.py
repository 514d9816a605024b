"""GGUF block kernels (kernels.llm.qgemv) against the gguf package's dequantization; the CPU decode
attention and RMSNorm kernels against their references; --precision native end to end on small
GGUF files written here."""

import contextlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels.common.bits import bf16_bits_to_f32_ref
from kernels.llm.attention import decode_attention, decode_attention_ref
from kernels.llm.norm import rmsnorm_rows, rmsnorm_rows_ref
from kernels.llm.qgemv import (
    BLOCKS,
    LANES,
    dequantize_ref,
    dequantize_rows,
    dequantize_t,
    pack,
    qlinear_rows,
    qlinear_rows_ref,
    unpack,
)

HALVES = {"Q8_0": [0], "Q4_0": [0], "Q4_1": [0, 2], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}
SPECIAL = [0.0, -0.0, 6e-8, -6e-8, 6.1e-5, 65504.0, np.inf, -np.inf, np.nan]  # zero, subnormal, max, inf, NaN


def blocks(seed: int, qtype: str, n: int, k: int, special: float | None = None) -> np.ndarray:
    """Random block bytes with sane float16 scales; `special` written into a few scales."""
    rng = np.random.default_rng(seed)
    size, nbytes = BLOCKS[qtype]
    w = rng.integers(0, 256, (n, k // size * nbytes), dtype=np.uint8)
    per = w.reshape(n, -1, nbytes)
    for at in HALVES[qtype]:
        h = (rng.standard_normal(per.shape[:2]) * 0.02).astype(np.float16)
        if special is not None:
            h.flat[rng.integers(0, h.size, 2)] = special
        per[:, :, at : at + 2] = h.view(np.uint8).reshape(*per.shape[:2], 2)
    return w


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    qtype=st.sampled_from(list(BLOCKS)),
    n=st.integers(1, 140),
    nblocks=st.integers(1, 3),
    m=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    special=st.none() | st.sampled_from(SPECIAL),
)
def test_qlinear_rows_matches_gguf_dequantization(qtype, n, nblocks, m, seed, special):
    k = BLOCKS[qtype][0] * nblocks
    w = blocks(seed, qtype, n, k, special)
    x = np.random.default_rng(seed + 1).standard_normal((m, k)).astype(np.float32)
    p = pack(w, qtype, k)
    assert p.shape[0] == -(-n // LANES) and (unpack(p, n) == w).all()
    ref = qlinear_rows_ref(x, w, qtype)
    got = qlinear_rows(x, p, qtype, n)
    assert got.shape == (m, n)
    finite = np.isfinite(ref)
    assert not np.isfinite(got[~finite]).any()  # a NaN or inf scale propagates
    with np.errstate(all="ignore"):
        scale = np.abs(x).astype(np.float64) @ np.abs(np.nan_to_num(dequantize_ref(w, qtype, k), posinf=0, neginf=0)).T
    np.testing.assert_array_less(np.abs(got[finite] - ref[finite]), 1e-4 * scale[finite] + 1e-5)


@settings(max_examples=40, deadline=None)
@given(
    qtype=st.sampled_from(list(BLOCKS)),
    n=st.integers(1, 140),
    seed=st.integers(0, 2**16),
    special=st.none() | st.sampled_from(SPECIAL),
)
def test_dequantization_matches_gguf(qtype, n, seed, special):
    k = BLOCKS[qtype][0] * 2
    w = blocks(seed, qtype, n, k, special)
    p = pack(w, qtype, k)
    ref = dequantize_ref(w, qtype, k)
    rows = np.random.default_rng(seed).integers(0, n, 5)
    np.testing.assert_array_equal(dequantize_rows(p, qtype, k, rows), ref[rows])  # exact, NaN where NaN
    bf16 = bf16_bits_to_f32_ref(dequantize_t(p, qtype, k, n)).T
    expect = torch.from_numpy(ref).to(torch.bfloat16).float().numpy()  # torch's rounding to bf16
    np.testing.assert_array_equal(bf16, expect)


def test_bad_weights_are_refused():
    w = blocks(0, "Q4_1", 8, 64)
    with pytest.raises(ValueError, match="whole number"):
        pack(w, "Q4_1", 48)
    with pytest.raises(ValueError, match="uint8"):
        pack(w.astype(np.int16), "Q4_1", 64)
    with pytest.raises(ValueError, match="no kernel for GGUF type Q5_0"):
        pack(w, "Q5_0", 64)
    p = pack(w, "Q4_1", 64)
    with pytest.raises(ValueError, match="packed weights"):
        qlinear_rows(np.zeros((1, 32), np.float32), p, "Q4_1", 8)
    with pytest.raises(ValueError, match="row index"):
        dequantize_rows(p, "Q4_1", 64, np.array([64]))


def _bits(a: np.ndarray) -> np.ndarray:
    return torch.from_numpy(a).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 3),
    kv=st.sampled_from([1, 2]),
    group=st.sampled_from([1, 3]),
    length=st.integers(1, 20),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_decode_attention_matches_reference(b, kv, group, length, seed, data):
    rng = np.random.default_rng(seed)
    d, heads = 8, kv * group
    pos = data.draw(st.integers(0, length - 1))
    lo = np.array([data.draw(st.integers(0, pos)) for _ in range(b)], np.int64)
    qkv = rng.standard_normal((b, (heads + 2 * kv) * d)).astype(np.float32)
    ang = rng.uniform(0, 6, (b, d)).astype(np.float32)  # each row at its own position
    cos, sin = np.cos(ang), np.sin(ang)
    k0, v0 = (_bits(rng.standard_normal((b, kv, length, d)).astype(np.float32)) for _ in range(2))
    k1, v1, k2, v2 = k0.copy(), v0.copy(), k0.copy(), v0.copy()
    got = decode_attention(qkv, cos, sin, k1, v1, pos, lo, heads)
    ref = decode_attention_ref(qkv, cos, sin, k2, v2, pos, lo, heads)
    assert np.abs(k1.astype(int) - k2.astype(int)).max() <= 1 and (v1 == v2).all()  # the cache write
    np.testing.assert_allclose(got, ref, rtol=2e-2, atol=2e-2)


def test_decode_attention_refuses_a_position_outside_the_cache():
    k = np.zeros((1, 1, 4, 8), np.uint16)
    with pytest.raises(ValueError, match="outside the cache"):
        one, zero = np.ones((1, 8), np.float32), np.zeros((1, 8), np.float32)
        decode_attention(np.zeros((1, 24), np.float32), one, zero, k, k.copy(), 4, np.zeros(1, np.int64), 1)


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 4), k=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_rmsnorm_rows_matches_torch(m, k, seed):
    rng = np.random.default_rng(seed)
    x, w = _bits(rng.standard_normal((m, k)).astype(np.float32) * 3), _bits(rng.standard_normal(k).astype(np.float32))
    got, ref = rmsnorm_rows(x, w, 1e-5), rmsnorm_rows_ref(x, w, 1e-5)
    assert np.abs(got.astype(np.int32) - ref.astype(np.int32)).max() <= 1  # at most one bf16 ulp (rsqrt's rounding)


def test_q4_k_quantizer_round_trips_through_gguf():
    """Our Q4_K writer (the gguf package has none): its blocks dequantize, by gguf's own code, to
    within the 4-bit step of each sub-block."""
    from models.llm.gguf_write import quantize_q4_k

    a = np.random.default_rng(0).standard_normal((16, 512)).astype(np.float32) * 0.02
    a[0, :32] = 0.0  # an all-zero sub-block
    back = dequantize_ref(quantize_q4_k(a), "Q4_K", 512)
    step = (a.reshape(16, 2, 8, 32).max(-1) - np.minimum(a.reshape(16, 2, 8, 32).min(-1), 0)) / 15
    err = np.abs(back - a).reshape(16, 2, 8, 32).max(-1)
    assert (err <= step * 0.75 + 1e-6).all() and (back[0, :32] == 0).all()


def test_make_gguf_writes_a_file_native_loads(invoke, tmp_path):
    from models.llm.gguf import load_gguf

    f = tmp_path / "tiny.gguf"
    r = invoke("make-gguf", "llm-tiny", "--type", "Q4_K", "-o", f)
    assert r.exit_code == 0 and "written:" in r.output, r.output
    _, record = load_gguf(f, torch.device("cpu"), torch.bfloat16, native=True)
    # 256-wide matrices are Q4_K, the 688-wide down projection fits no 32-weight block: F16
    assert record["tensor_types"]["Q4_K"] > 0 and record["tensor_types"]["F16"] == 4
    for args, why in (
        (["nope", "-o", f], "unknown LLM preset"),
        (["llm-tiny", "--type", "Q3_K", "-o", f], "--type"),
        (["llm-tiny", "-o", tmp_path / "x.bin"], "must name a .gguf file"),
    ):
        r = invoke("make-gguf", *args)
        assert r.exit_code == 2 and why in r.output, r.output
    assert not list(tmp_path.glob(".*partial"))


def _hostile_gguf(count: int, item_type: int = 0) -> bytes:
    """A GGUF header with one metadata array that declares `count` items and holds none."""
    import struct

    key = b"general.x"
    return (
        b"GGUF"
        + struct.pack("<IQQ", 3, 0, 1)
        + struct.pack("<Q", len(key))
        + key
        + struct.pack("<IIQ", 9, item_type, count)
        + bytes(16)
    )


@pytest.mark.parametrize(("count", "item_type"), [(10**9, 0), (10**9, 8), (2**63, 9), (10**12, 12)])
def test_gguf_counts_beyond_the_file_are_one_line(tmp_path, count, item_type):
    from models.errors import UserError
    from models.llm.gguf import open_gguf

    f = tmp_path / "bad.gguf"
    f.write_bytes(_hostile_gguf(count, item_type))
    with pytest.raises(UserError, match=r"bytes where .* are left"):
        open_gguf(f)


@settings(max_examples=60, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_gguf_headers_open_or_fail_in_one_line(tmp_path_factory, data):
    """Any byte of a small valid file's header and metadata changed, or the file cut short: the
    reader opens it or refuses it with a UserError, in bounded time."""
    from models.errors import UserError
    from models.llm.config import LLMConfig
    from models.llm.gguf import open_gguf
    from models.llm.gguf_write import write_gguf
    from models.llm.model import build_llm

    folder = tmp_path_factory.mktemp("gguf")
    src = folder / "ok.gguf"
    cfg = LLMConfig("tiny-h", 64, 64, 1, 4, 2, 64, max_position=32)
    write_gguf(src, build_llm(cfg, torch.device("cpu"), torch.float32, 0).state_dict(), cfg, "Q8_0")
    raw = bytearray(src.read_bytes())
    head = min(len(raw), 2048)
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, head - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.none() | st.integers(0, len(raw)))
    f = folder / "m.gguf"
    f.write_bytes(bytes(raw[:cut] if cut is not None else raw))
    with contextlib.suppress(UserError):
        open_gguf(f)
