"""Writing GGUF files of a decoder (llama.cpp's format), for tests and for `modelpower make-gguf`.

A model of any preset's shape, with seeded random weights, written as llama.cpp's converter writes
a real checkpoint: Hugging Face names mapped to GGUF's, Llama/Mistral q and k rows permuted for its
interleaved RoPE, matrices quantized. Types: F32 and F16, the `gguf` package's own quantizers
(Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) and our Q4_K (`quantize_q4_k`: the gguf package dequantizes K-quants
but cannot write them). A matrix whose width is not a whole number of the type's blocks falls back
(Q4_K to Q4_1, the others to Q8_0, and to F16 where no 32-weight block fits; llama.cpp's own
quantizer falls back likewise, Q4_K to Q5_0, which `--precision native` has no kernel for), and the
returned counts say so. A vocabulary of
type "none" lets llama.cpp load the file and run token ids; it holds no tokenizer for text.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import torch
from gguf.quants import quantize

from models.llm.config import LLM_CONFIGS, LLMConfig
from models.llm.gguf import LAYER_NAMES
from models.llm.model import build_llm

TYPES = ("F32", "F16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K")
FALLBACK = {"Q4_K": "Q4_1"}  # else Q8_0: for matrices whose width is not a whole number of the type's blocks


def quantize_q4_k(a: np.ndarray) -> np.ndarray:
    """float32 [N, K] (K a multiple of 256) as Q4_K blocks, uint8 [N, K / 256 * 144]: per 32-weight
    sub-block a 6-bit scale and min (range min..max over 15 steps), under float16 super-scales."""
    n, k = a.shape
    x = a.reshape(n, k // 256, 8, 32).astype(np.float32)
    lo, hi = np.minimum(x.min(-1), 0.0), np.maximum(x.max(-1), 0.0)
    scale, mins = (hi - lo) / 15.0, -lo
    d = (scale.max(-1) / 63.0).astype(np.float16)
    dmin = (mins.max(-1) / 63.0).astype(np.float16)
    df, dmf = d.astype(np.float32)[..., None], dmin.astype(np.float32)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.clip(np.nan_to_num(np.round(scale / df)), 0, 63).astype(np.uint8)
        mn = np.clip(np.nan_to_num(np.round(mins / dmf)), 0, 63).astype(np.uint8)
        step, low = (df * sc)[..., None], (dmf * mn)[..., None]
        q = np.clip(np.nan_to_num(np.round((x + low) / step)), 0, 15).astype(np.uint8)
    packed = np.zeros((n, k // 256, 12), np.uint8)
    for j in range(4):  # the inverse of ggml's get_scale_min_k4
        packed[..., j] = sc[..., j] | ((sc[..., j + 4] >> 4) << 6)
        packed[..., j + 4] = mn[..., j] | ((mn[..., j + 4] >> 4) << 6)
        packed[..., j + 8] = (sc[..., j + 4] & 15) | ((mn[..., j + 4] & 15) << 4)
    qs = (q[:, :, 0::2] | (q[:, :, 1::2] << 4)).reshape(n, k // 256, 128)  # chunk c: sub-blocks 2c, 2c+1
    head = np.concatenate([d.view(np.uint8).reshape(n, -1, 2), dmin.view(np.uint8).reshape(n, -1, 2)], -1)
    return np.concatenate([head, packed, qs], -1).reshape(n, -1)


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _vtype(value):
    if isinstance(value, list):
        return gguf.GGUFValueType.ARRAY
    if isinstance(value, bool):
        return gguf.GGUFValueType.BOOL
    if isinstance(value, int):
        return gguf.GGUFValueType.UINT32
    return gguf.GGUFValueType.STRING


def write_gguf(
    path: Path,
    state: dict,
    cfg: LLMConfig,
    qtype: str = "F32",
    arch: str | None = None,
    tokenizer: dict | None = None,
    placeholder_vocab: bool = False,
) -> dict:
    """Write `state` (Hugging Face names -> float tensors of a `cfg` decoder) as a GGUF file; matrices
    in `qtype`. `tokenizer`: GGUF tokenizer metadata to embed as given; `placeholder_vocab`: the
    vocabulary type "none", so that llama.cpp loads the file. Returns {tensor types: count}."""
    if qtype not in TYPES:
        raise ValueError(f"GGUF type {qtype} cannot be written (types: {', '.join(TYPES)})")
    arch = arch or cfg.family
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    for k, v in LAYER_NAMES.items():
        for i in range(cfg.num_layers):
            names[f"model.layers.{i}.{v}"] = f"blk.{i}.{k}"
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(cfg.num_layers)
    w.add_context_length(cfg.max_position)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_heads)
    w.add_head_count_kv(cfg.num_kv_heads)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_vocab_size(cfg.vocab_size)
    if placeholder_vocab:
        w.add_tokenizer_model("none")
    for key, value in (tokenizer or {}).items():
        w.add_key_value(key, value, _vtype(value))
    counts: dict[str, int] = {}
    for k, t in state.items():
        if cfg.tie_embeddings and k == "lm_head.weight":
            continue
        a = np.ascontiguousarray(t.detach().float().numpy())
        if "q_proj" in k and arch != "qwen2":  # llama.cpp permutes Llama/Mistral q and k, not Qwen2's
            a = _permute(a, cfg.num_heads)
        elif "k_proj" in k and arch != "qwen2":
            a = _permute(a, cfg.num_kv_heads)
        kind = qtype if a.ndim == 2 else "F32"
        if kind not in ("F32", "F16"):
            block = 256 if kind == "Q4_K" else 32
            kind = kind if a.shape[1] % block == 0 else FALLBACK.get(kind, "Q8_0")
            kind = kind if a.shape[1] % 32 == 0 else "F16"  # no block type fits, as llama.cpp does
        if kind == "F32":
            w.add_tensor(names[k], a)
        elif kind == "F16":
            w.add_tensor(names[k], a.astype(np.float16))
        else:
            q = gguf.GGMLQuantizationType[kind]
            data = quantize_q4_k(a) if kind == "Q4_K" else quantize(a, q)
            w.add_tensor(names[k], data, raw_shape=data.shape, raw_dtype=q)
        counts[kind] = counts.get(kind, 0) + 1
    if cfg.rope_factors is not None:  # Llama 3.1's RoPE scaling, as llama.cpp's converter writes it
        w.add_tensor("rope_freqs.weight", np.asarray(cfg.rope_factors, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return counts


def make_gguf(preset: str, path: Path, qtype: str, seed: int) -> dict:
    """A seeded random model of `preset`'s shape written to `path` as `write_gguf` does (llama.cpp can
    run it), through a temporary file renamed at the end: an interrupted write leaves nothing."""
    cfg = LLM_CONFIGS[preset]
    model = build_llm(cfg, torch.device("cpu"), torch.float32, seed)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        counts = write_gguf(tmp, model.state_dict(), cfg, qtype, placeholder_vocab=True)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return counts


__all__ = ["FALLBACK", "TYPES", "make_gguf", "quantize_q4_k", "write_gguf"]
