"""Local Hugging Face checkpoints (config.json + safetensors, sharded or not) of the Llama, Qwen2 and
Mistral families, loaded into `models.llm.model.DecoderLM`. Nothing is downloaded; nothing is unpickled."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from models.errors import UserError, first_line
from models.llm.config import LLMConfig, check_rope_factors, llama3_rope_factors
from models.llm.model import DecoderLM

FAMILIES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "MistralForCausalLM": "mistral"}


def read_config(folder: Path) -> LLMConfig:
    """The architecture from config.json; one clear error for anything else."""
    f = Path(folder) / "config.json"
    if not Path(folder).is_dir():
        raise UserError(f"checkpoint folder not found: {folder}")
    c = _read_json(f, f"{folder} has no config.json")
    if not isinstance(c, dict):
        raise UserError(f"{f}: expected a JSON object")
    archs = c.get("architectures") or [c.get("model_type", "unknown")]
    arch = archs[0] if isinstance(archs, list) and archs else archs
    if not isinstance(arch, str) or arch not in FAMILIES:
        raise UserError(f"{folder}: architecture {arch!r} is not supported (supported: {', '.join(FAMILIES)})")

    def whole(key: str, default=None) -> int:
        v = c.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UserError(f"{f}: {key} must be a positive whole number, got {v!r}")
        return v

    def real(key: str, default: float) -> float:
        v = c.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or not (math.isfinite(v) and v > 0):
            raise UserError(f"{f}: {key} must be a positive finite number, got {v!r}")
        return float(v)

    if c.get("use_sliding_window") or c.get("hidden_act", "silu") != "silu":
        # the decoder here is RoPE + SiLU with full attention: anything else would be a different model
        raise UserError(f"{f}: sliding-window attention and hidden_act other than silu are not supported")
    if c.get("attention_bias") or c.get("mlp_bias"):  # Llama's option: biases on q/k/v *and* o_proj (or the MLP)
        raise UserError(
            f"{f}: attention_bias / mlp_bias are not supported (the decoder has q/k/v biases for Qwen2 only)"
        )
    if not isinstance(c.get("tie_word_embeddings", False), bool):
        raise UserError(f"{f}: tie_word_embeddings must be true or false")
    heads = whole("num_attention_heads")
    kv_heads, hidden = whole("num_key_value_heads", heads), whole("hidden_size")
    if hidden % heads or heads % kv_heads:
        raise UserError(f"{f}: hidden_size {hidden} / heads {heads} / kv heads {kv_heads} do not divide evenly")
    theta, rope_factors = _rope(c, f, real, hidden // heads)
    return LLMConfig(
        name=Path(folder).name,
        vocab_size=whole("vocab_size"),
        hidden_size=hidden,
        num_layers=whole("num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=kv_heads,
        intermediate_size=whole("intermediate_size"),
        max_position=whole("max_position_embeddings", 4096),
        rope_theta=theta,
        rope_factors=rope_factors,
        norm_eps=real("rms_norm_eps", 1e-6),
        qkv_bias=FAMILIES[arch] == "qwen2",
        tie_embeddings=c.get("tie_word_embeddings", False) is True,
        family=FAMILIES[arch],
    )


def _rope(c: dict, f: Path, real, head_dim: int) -> tuple[float, tuple[float, ...] | None]:
    """(rope_theta, per-frequency divisors or None) from `rope_scaling` (or transformers 5's
    `rope_parameters`): plain RoPE, or Llama 3.1's "llama3" scaling; any other scaling is refused."""
    scaling = c.get("rope_scaling") or c.get("rope_parameters")
    if scaling is not None and not isinstance(scaling, dict):
        raise UserError(f"{f}: rope_scaling must be an object")
    scaling = scaling or {}
    theta = _positive(scaling["rope_theta"], "rope_theta", f) if "rope_theta" in scaling else real("rope_theta", 1e4)
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind in (None, "default"):
        return theta, None
    if kind != "llama3":
        raise UserError(f"{f}: RoPE scaling {kind!r} is not supported (plain RoPE and Llama 3.1's 'llama3' are)")
    factor, low, high = (_positive(scaling.get(k), k, f) for k in ("factor", "low_freq_factor", "high_freq_factor"))
    old = _positive(scaling.get("original_max_position_embeddings"), "original_max_position_embeddings", f)
    if high <= low:
        raise UserError(f"{f}: rope_scaling high_freq_factor must be above low_freq_factor")
    return theta, check_rope_factors(llama3_rope_factors(head_dim, theta, factor, low, high, int(old)), str(f))


def _positive(v, key: str, f: Path) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not (math.isfinite(v) and v > 0):
        raise UserError(f"{f}: rope_scaling {key} must be a positive finite number, got {v!r}")
    return float(v)


def _read_json(f: Path, missing: str):
    """A JSON file of a checkpoint: missing, not UTF-8, not JSON or nested too deeply is one line."""
    if f.exists() and (not f.is_file() or f.stat().st_size > 64 << 20):  # a FIFO would block; no config is 64 MB
        raise UserError(f"{f} is not a regular JSON file of a sane size")
    try:
        return json.loads(f.read_bytes().decode("utf-8"))
    except OSError:
        raise UserError(missing) from None
    except UnicodeDecodeError:
        raise UserError(f"{f} is not UTF-8 text") from None
    except (ValueError, RecursionError) as e:
        raise UserError(f"{f} is not valid JSON: {str(e)[:120] or 'nested too deeply'}") from None


def shard_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.exists():
        doc = _read_json(index, f"cannot read {index}")
        wmap = doc.get("weight_map") if isinstance(doc, dict) else None
        if not isinstance(wmap, dict) or not all(isinstance(v, str) and v and "\x00" not in v for v in wmap.values()):
            raise UserError(f"{index} is malformed: needs a weight_map of tensor name -> shard file name")
        names = sorted(set(wmap.values()))
        files = [folder / n for n in names]
        for f in files:
            if not f.resolve().is_relative_to(folder.resolve()):
                raise UserError(f"{index} names a shard outside the checkpoint folder: {f.name}")
            if not f.is_file():
                raise UserError(f"{index} names a missing shard: {f.name}")
        return files
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise UserError(f"{folder} has no .safetensors weights")
    return files


def load_checkpoint(folder: Path, device: torch.device, dtype: torch.dtype, cfg: LLMConfig | None = None) -> DecoderLM:
    """The checkpoint's model on `device` in `dtype` (`cfg`: its config.json as `read_config` read
    it, or None to read it); the first missing or mismatched tensor is named."""
    cfg = cfg or read_config(folder)
    with torch.device("meta"):
        model = DecoderLM(cfg)
    model = model.to_empty(device=device).to(dtype)
    state: dict[str, torch.Tensor] = {}
    for f in shard_files(folder):
        try:
            state.update(load_file(str(f), device=str(device)))
        except (SafetensorError, OSError) as e:
            raise UserError(f"cannot read weights {f}: {first_line(e)}") from None
    if cfg.tie_embeddings:
        state.pop("lm_head.weight", None)
    expected = {k: v for k, v in model.state_dict().items() if not (cfg.tie_embeddings and k == "lm_head.weight")}
    for k, v in expected.items():
        if k not in state:
            raise UserError(f"{folder}: tensor {k!r} is missing from the checkpoint")
        if tuple(state[k].shape) != tuple(v.shape):
            raise UserError(
                f"{folder}: tensor {k!r} has shape {list(state[k].shape)}, the config implies {list(v.shape)}"
            )
    model.load_state_dict({k: state[k].to(dtype) for k in expected}, strict=False)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model.eval()
