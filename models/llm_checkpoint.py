"""Local Hugging Face checkpoints (config.json + safetensors, sharded or not) of the Llama, Qwen2 and
Mistral families, loaded into `models.llm.DecoderLM`. Nothing is downloaded; nothing is unpickled."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from models.errors import UserError
from models.llm import DecoderLM, LLMConfig

FAMILIES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "MistralForCausalLM": "mistral"}


def read_config(folder: Path) -> LLMConfig:
    """The architecture from config.json; one clear error for anything else."""
    f = Path(folder) / "config.json"
    if not Path(folder).is_dir():
        raise UserError(f"checkpoint folder not found: {folder}")
    try:
        c = json.loads(f.read_text())
    except OSError:
        raise UserError(f"{folder} has no config.json") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{f} is not valid JSON: {e}") from None
    arch = (c.get("architectures") or [c.get("model_type", "unknown")])[0]
    if arch not in FAMILIES:
        raise UserError(f"{folder}: architecture {arch!r} is not supported (supported: {', '.join(FAMILIES)})")
    try:
        heads = int(c["num_attention_heads"])
        return LLMConfig(
            name=Path(folder).name,
            vocab_size=int(c["vocab_size"]),
            hidden_size=int(c["hidden_size"]),
            num_layers=int(c["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(c.get("num_key_value_heads", heads)),
            intermediate_size=int(c["intermediate_size"]),
            max_position=int(c.get("max_position_embeddings", 4096)),
            rope_theta=float(c.get("rope_theta", 10000.0)),
            norm_eps=float(c.get("rms_norm_eps", 1e-6)),
            qkv_bias=FAMILIES[arch] == "qwen2",
            tie_embeddings=bool(c.get("tie_word_embeddings", False)),
            family=FAMILIES[arch],
        )
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{f} is missing or has a bad field: {e}") from None


def shard_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError) as e:
            raise UserError(f"{index} is malformed: {e}") from None
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


def load_checkpoint(folder: Path, device: torch.device, dtype: torch.dtype) -> DecoderLM:
    """The checkpoint's model on `device` in `dtype`; the first missing or mismatched tensor is named."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cfg = read_config(folder)
    with torch.device("meta"):
        model = DecoderLM(cfg)
    model = model.to_empty(device=device).to(dtype)
    state: dict[str, torch.Tensor] = {}
    for f in shard_files(folder):
        try:
            state.update(load_file(str(f), device=str(device)))
        except (SafetensorError, OSError) as e:
            raise UserError(f"cannot read weights {f}: {str(e).splitlines()[0]}") from None
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
