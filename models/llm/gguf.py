"""GGUF checkpoints (llama.cpp's format) of the Llama, Qwen2 and Mistral families, loaded into
`models.llm.model.DecoderLM`: hyper-parameters from the file's metadata, tensors renamed to Hugging
Face's names and dequantized (by the `gguf` package) to the run's dtype, or, with `native=True`
(`--precision native`), the quantized matmul weights and the embedding kept in their block format
(`models.llm.linear.QuantLinear`, `QuantEmbedding`; types in `kernels.llm.qgemv.BLOCKS`, others refused).

llama.cpp's converter permutes the rows of Llama/Mistral q and k projections for its interleaved
RoPE; they are permuted back to Hugging Face's rotate-half layout here (Qwen2's are not permuted,
as in transformers' GGUF loader). The file is memory-mapped, never unpickled.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import gguf
import gguf.quants
import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFReader
from torch import nn

from kernels.llm.qgemv import BLOCKS, pack
from models.errors import UserError, first_line
from models.llm.config import LLMConfig, check_rope_factors
from models.llm.linear import QuantEmbedding, QuantLinear
from models.llm.model import DecoderLM

ARCHS = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2"}
PERMUTED_QK = {"llama", "mistral"}
LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
TOP_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def is_gguf(path: str | Path) -> bool:
    return str(path).lower().endswith(".gguf")


# GGUF value types: fixed sizes (8 is a string, 9 an array)
_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def check_gguf_layout(path: Path) -> None:
    """Walk the header and metadata of a GGUF file checking every declared count and length against
    the bytes left in the file before anything reads that far: a file that declares a metadata array
    of 10^9 items in a few bytes (on which the gguf package's reader walks item by item, for ever) is
    one line. Array item counts are checked at their smallest size (8 bytes for a string), so the
    walk is bounded by the file's size."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 24:
            raise UserError(f"{path} is not a readable GGUF file (truncated or not GGUF): {size} bytes")
        window = {"start": 0, "data": b""}

        def read(at: int, n: int) -> bytes:  # through a 4 MB window: the file is never mapped whole
            start, data = window["start"], window["data"]
            if not (start <= at and at + n <= start + len(data)):
                fh.seek(at)
                window["start"], window["data"] = at, fh.read(max(n, 4 << 20))
                start, data = at, window["data"]
            return data[at - start : at - start + n]

        if read(0, 4) != b"GGUF":
            return  # not GGUF: the reader says so in its own words
        version = struct.unpack("<I", read(4, 4))[0]
        order = "<" if version < 65536 else ">"
        if struct.unpack(order + "I", read(4, 4))[0] not in (2, 3):
            return  # GGUF v1 or an unknown version: the reader says which
        pos = 8

        def need(n: int, what: str) -> None:
            if n < 0 or pos + n > size:
                raise UserError(
                    f"{path}: {what} declares {n:,} bytes where {size - pos:,} are left (a damaged or "
                    "hostile GGUF file)"
                )

        def take(fmt: str, what: str):
            nonlocal pos
            n = struct.calcsize(fmt)
            need(n, what)
            v = struct.unpack(order + fmt, read(pos, n))
            pos += n
            return v[0]

        def string(what: str) -> None:
            nonlocal pos
            n = take("Q", what)
            need(n, what)
            pos += n

        def value(vtype: int, what: str, depth: int = 0) -> None:
            nonlocal pos
            if vtype in _GGUF_SIZES:
                need(_GGUF_SIZES[vtype], what)
                pos += _GGUF_SIZES[vtype]
            elif vtype == 8:
                string(what)
            elif vtype == 9:
                if depth >= 64:
                    raise UserError(f"{path}: {what} nests arrays more than 64 deep")
                item, count = take("I", what), take("Q", what)
                if item in _GGUF_SIZES:
                    need(count * _GGUF_SIZES[item], f"{what} ({count:,} items)")
                    pos += count * _GGUF_SIZES[item]
                else:
                    need(count * 8, f"{what} ({count:,} items)")
                    for _ in range(count):
                        value(item, what, depth + 1)
            else:
                raise UserError(f"{path}: {what} has an unknown value type {vtype}")

        n_tensors, n_kv = take("Q", "the tensor count"), take("Q", "the metadata count")
        need(n_kv * 13, f"the metadata count ({n_kv:,})")  # each key-value takes at least 13 bytes
        need(n_tensors * 24, f"the tensor count ({n_tensors:,})")  # each tensor info at least 24 bytes
        for i in range(n_kv):
            string(f"metadata key {i}")
            value(take("I", f"metadata value {i}"), f"metadata value {i}")
        for i in range(n_tensors):
            string(f"tensor {i}'s name")
            dims = take("I", f"tensor {i}'s rank")
            if dims > 8:
                raise UserError(f"{path}: tensor {i} declares {dims} dimensions")
            need(dims * 8 + 12, f"tensor {i}'s info")
            pos += dims * 8 + 12


def open_gguf(path: Path):
    """The file's reader; a truncated or non-GGUF file is one line."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a GGUF file")
    if not path.is_file():
        raise UserError(f"GGUF file not found: {path}")
    try:
        check_gguf_layout(path)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        reader = GGUFReader(str(path))
    except Exception as e:  # bad magic, truncated tensor data, a header that points past the end
        why = first_line(e, 160)
        raise UserError(f"{path} is not a readable GGUF file (truncated or not GGUF): {why}") from None
    reader.path = path  # named in every error about the file
    return reader


def field(reader, key: str, default=None):
    """A metadata value (scalar, string or array), or `default` if the key is absent."""
    f = reader.fields.get(key)
    if f is None:
        return default
    try:
        return f.contents()
    except Exception:
        raise UserError(f"{reader.path}: metadata {key!r} cannot be read") from None


def read_gguf_config(reader, name: str) -> LLMConfig:
    """Hyper-parameters from the metadata; one line for an unsupported architecture or a bad value."""
    arch = field(reader, "general.architecture")
    if arch not in ARCHS:
        raise UserError(f"{reader.path}: GGUF architecture {arch!r} is not supported (supported: {', '.join(ARCHS)})")

    def whole(key: str, default=None) -> int:
        v = field(reader, f"{arch}.{key}", default)
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise UserError(f"{reader.path}: metadata {arch}.{key} must be a positive whole number, got {v!r}")
        return int(v)

    def real(key: str, default: float) -> float:
        v = field(reader, f"{arch}.{key}", default)
        if not isinstance(v, int | float | np.number) or not (np.isfinite(v) and v > 0):
            raise UserError(f"{reader.path}: metadata {arch}.{key} must be a positive number, got {v!r}")
        return float(v)

    if field(reader, f"{arch}.rope.scaling.type") not in (None, "none") or field(reader, f"{arch}.expert_count"):
        raise UserError(f"{reader.path}: RoPE scaling and mixture-of-experts models are not supported")
    heads = whole("attention.head_count")
    kv_heads, hidden = whole("attention.head_count_kv", heads), whole("embedding_length")
    if hidden % heads or heads % kv_heads:
        raise UserError(f"{reader.path}: hidden {hidden} / heads {heads} / kv heads {kv_heads} do not divide evenly")
    tensors = {t.name for t in reader.tensors}
    vocab = field(reader, f"{arch}.vocab_size")
    if vocab is None:
        tokens = reader.fields.get("tokenizer.ggml.tokens")
        vocab = len(tokens.data) if tokens is not None else None
    if not isinstance(vocab, int | np.integer) or vocab < 1:
        raise UserError(f"{reader.path}: the vocabulary size is missing from the metadata")
    return LLMConfig(
        name=name,
        vocab_size=int(vocab),
        hidden_size=hidden,
        num_layers=whole("block_count"),
        num_heads=heads,
        rope_factors=_rope_factors(reader, hidden // heads),
        num_kv_heads=kv_heads,
        intermediate_size=whole("feed_forward_length"),
        max_position=whole("context_length", 4096),
        rope_theta=real("rope.freq_base", 10000.0),
        norm_eps=real("attention.layer_norm_rms_epsilon", 1e-6),
        qkv_bias="blk.0.attn_q.bias" in tensors,
        tie_embeddings="output.weight" not in tensors,
        family=ARCHS[arch],
    )


def _rope_factors(reader, head_dim: int) -> tuple[float, ...] | None:
    """The `rope_freqs` tensor (Llama 3.1's RoPE scaling as llama.cpp stores it: one divisor per
    rotary frequency), or None; one line if it is not head_dim / 2 positive float32 factors."""
    t = next((t for t in reader.tensors if t.name == "rope_freqs.weight"), None)
    if t is None:
        return None
    flat = sum(d > 1 for d in t.shape) <= 1  # a vector, not a matrix of the same size
    a = np.asarray(t.data, dtype=np.float64).ravel() if t.tensor_type == gguf.GGMLQuantizationType.F32 else None
    if a is None or not flat or a.size != head_dim // 2 or not np.all(np.isfinite(a) & (a > 0)):
        raise UserError(f"{reader.path}: rope_freqs must be {head_dim // 2} positive float32 factors")
    return check_rope_factors(tuple(float(x) for x in a), f"{reader.path}: rope_freqs")


def hf_name(gguf_name: str) -> str | None:
    """Hugging Face's name of a GGUF tensor, or None for one that is not a weight (rope_freqs: read into the config)."""
    if gguf_name in TOP_NAMES:
        return TOP_NAMES[gguf_name]
    parts = gguf_name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in LAYER_NAMES:
        return f"model.layers.{parts[1]}.{LAYER_NAMES[parts[2]]}"
    return None


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (interleaved RoPE -> rotate-half)."""
    rows = w.shape[0]
    if rows % (2 * heads):
        raise UserError(
            f"q/k rows ({rows}) do not split into {heads} heads of an even size: the head counts in the "
            "metadata do not fit the tensors"
        )
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def dequantized(reader, t) -> np.ndarray:
    """One tensor as float32 in numpy order ([out, in] for a matrix); unsupported types are one line."""
    qtype = GGMLQuantizationType(t.tensor_type)
    try:
        values = gguf.quants.dequantize(t.data, qtype)  # through the module: a test replaces it
        return np.array(values, dtype=np.float32).reshape(tuple(int(d) for d in t.shape[::-1]))
    except NotImplementedError:
        raise UserError(
            f"{reader.path}: tensor {t.name} is {qtype.name}, which the gguf package cannot dequantize"
        ) from None


FLOAT_TYPES = {"F32", "F16", "BF16"}


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _native_modules(reader, cfg: LLMConfig, model: DecoderLM, path: Path, dtype: torch.dtype) -> dict[str, nn.Module]:
    """On the meta model: every quantized matmul weight and the embedding replaced by its block
    module; a quantized type without a kernel is one line naming it. Returns {HF weight name: module}."""

    modules = {}
    for t in reader.tensors:
        name, qtype = hf_name(t.name), t.tensor_type.name
        if name is None or qtype in FLOAT_TYPES or not name.endswith(".weight"):
            continue
        if qtype not in BLOCKS:
            raise UserError(
                f"{path}: tensor {t.name} is {qtype}, which --precision native has no kernel for "
                f"(kernels: {', '.join(BLOCKS)}); run it at bf16 or int8"
            )
        owner = name.removesuffix(".weight")
        try:
            old = model.get_submodule(owner)
        except AttributeError:
            raise UserError(
                f"{path}: tensor {t.name} ({name}) does not fit a {cfg.family} decoder of this config"
            ) from None
        if isinstance(old, nn.Embedding):
            new = QuantEmbedding(old.num_embeddings, old.embedding_dim, qtype, dtype)
        elif isinstance(old, nn.Linear):
            with torch.device("meta"):
                new = QuantLinear(old.in_features, old.out_features, qtype, bias=old.bias is not None)
        else:
            raise UserError(f"{path}: tensor {t.name} is quantized where the decoder has no matmul")
        _set_module(model, owner, new)
        modules[name] = new
    if cfg.tie_embeddings and "model.embed_tokens.weight" in modules:
        emb = modules["model.embed_tokens.weight"]
        with torch.device("meta"):
            head = QuantLinear(cfg.hidden_size, cfg.vocab_size, emb.qtype)
        model.lm_head = head
        modules["lm_head.weight"] = head  # shares the embedding's blocks once they are read
    return modules


def load_gguf(
    path: Path, device: torch.device, dtype: torch.dtype, reader=None, native: bool = False
) -> tuple[DecoderLM, dict]:
    """The file's model on `device` in `dtype`, and a record of what was read (quantization types,
    parameter count checked against the architecture). `reader`: the file as `open_gguf` opened
    it, or None to open it. `native`: quantized weights stay in their blocks (CPU only)."""
    reader = reader or open_gguf(path)
    cfg = read_gguf_config(reader, Path(path).stem)
    with torch.device("meta"):
        model = DecoderLM(cfg)
    blocks = _native_modules(reader, cfg, model, Path(path), dtype) if native else {}
    model = model.to_empty(device=device).to(dtype)
    if cfg.tie_embeddings and "lm_head.weight" not in blocks:
        model.lm_head.weight = model.model.embed_tokens.weight
    expected = model.state_dict()
    loaded: set[str] = set()
    types: dict[str, int] = {}
    n_params = 0
    with torch.no_grad():
        for t in reader.tensors:
            name = hf_name(t.name)
            if name is None:
                continue
            if name in blocks:
                rows = np.asarray(t.data)
                mod = blocks[name]
                n_rows = mod.num_embeddings if hasattr(mod, "num_embeddings") else mod.out_features
                if rows.ndim != 2 or rows.shape[0] != n_rows:  # checked before the rows are permuted
                    raise UserError(
                        f"{path}: tensor {t.name} has shape {[int(d) for d in t.shape[::-1]]}, the "
                        f"metadata implies {n_rows} rows"
                    )
                if name.endswith("q_proj.weight") and cfg.family in PERMUTED_QK:
                    rows = _unpermute(rows, cfg.num_heads)
                elif name.endswith("k_proj.weight") and cfg.family in PERMUTED_QK:
                    rows = _unpermute(rows, cfg.num_kv_heads)
                try:
                    if hasattr(mod, "set_blocks"):
                        mod.set_blocks(rows)
                    else:
                        mod.blocks = pack(np.ascontiguousarray(rows), mod.qtype, mod.embedding_dim)
                except ValueError as e:
                    raise UserError(f"{path}: tensor {t.name}: {first_line(e)}") from None
                loaded.add(name)
                n_params += int(np.prod([int(d) for d in t.shape]))
                types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
                continue
            if name not in expected:
                raise UserError(f"{path}: tensor {t.name} ({name}) does not fit a {cfg.family} decoder of this config")
            w = dequantized(reader, t)
            if name.endswith(("q_proj.weight", "q_proj.bias")) and cfg.family in PERMUTED_QK:
                w = _unpermute(w, cfg.num_heads)
            elif name.endswith(("k_proj.weight", "k_proj.bias")) and cfg.family in PERMUTED_QK:
                w = _unpermute(w, cfg.num_kv_heads)
            if tuple(w.shape) != tuple(expected[name].shape):
                raise UserError(
                    f"{path}: tensor {t.name} has shape {list(w.shape)}, the metadata implies "
                    f"{list(expected[name].shape)}"
                )
            expected[name].copy_(torch.from_numpy(w))
            loaded.add(name)
            n_params += w.size
            qname = t.tensor_type.name
            types[qname] = types.get(qname, 0) + 1
    if "lm_head.weight" in blocks and cfg.tie_embeddings:
        blocks["lm_head.weight"].blocks = blocks["model.embed_tokens.weight"].blocks
    tied = {"lm_head.weight"} if cfg.tie_embeddings else set()
    missing = [k for k in [*expected, *blocks] if k not in loaded and k not in tied]
    if missing:
        raise UserError(f"{path}: tensor {missing[0]!r} is missing from the file")
    if n_params != cfg.param_count():
        raise UserError(f"{path}: the file holds {n_params:,} parameters, its metadata implies {cfg.param_count():,}")
    record = {
        "kind": "gguf",
        "path": str(Path(path).resolve()),
        "tensor_types": types,
        "params_in_file": n_params,
        "dequantized_to": str(dtype).removeprefix("torch."),
    }
    if native:
        record["dequantized_to"] = f"{record['dequantized_to']} (float tensors only; quantized blocks kept)"
        kept: dict[str, int] = {}
        for name, m in blocks.items():
            if name != "lm_head.weight" or not cfg.tie_embeddings:
                kept[m.qtype] = kept.get(m.qtype, 0) + 1
        record["kept_as_blocks"] = kept
    return model.eval(), record
