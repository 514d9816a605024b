"""Where an LLM comes from, decided once per run: a preset (seeded random weights), a GGUF file or a
Hugging Face checkpoint folder.

`resolve_model` reads what every later step needs (the architecture, the tokenizer) and keeps the
opened GGUF file, so the file is opened once and no later step decides again what kind of source
it is; `load_model` builds or reads the weights from it.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from harness.errors import UserError
from models.llm.checkpoint import load_checkpoint, read_config
from models.llm.config import LLM_CONFIGS, LLMConfig
from models.llm.gguf import is_gguf, load_gguf, open_gguf, read_gguf_config
from models.llm.model import build_llm
from models.llm.tokenizer import from_folder, from_gguf


@dataclass
class ModelSource:
    """A model as given on the command line, resolved."""

    name: str  # as given: a preset name, a .gguf file or a checkpoint folder
    kind: Literal["preset", "gguf", "checkpoint"]
    cfg: LLMConfig
    tokenizer: object | None  # models.llm.tokenizer.TextTokenizer, for text prompts
    why_no_tokenizer: str | None  # why there is none (said when a text prompt needs one)
    reader: object | None = None  # the GGUF file, opened once

    @property
    def path(self) -> Path:
        return Path(self.name)


def resolve_model(model: str) -> ModelSource:
    """The source of `model`, its config and its tokenizer; one line naming the presets if it is none.
    A GGUF whose tokenizer is not byte-level BPE, or is malformed, still resolves: only text prompts
    need a tokenizer."""
    if model in LLM_CONFIGS:
        why = f"{model} is a preset with random weights and no tokenizer"
        return ModelSource(model, "preset", LLM_CONFIGS[model], None, why)
    if is_gguf(model):
        reader = open_gguf(Path(model))
        cfg = read_gguf_config(reader, Path(model).stem)
        if reader.fields.get("tokenizer.ggml.tokens") is None:
            return ModelSource(model, "gguf", cfg, None, f"{model} embeds no vocabulary", reader)
        try:
            return ModelSource(model, "gguf", cfg, from_gguf(reader), None, reader)
        except UserError as e:
            return ModelSource(model, "gguf", cfg, None, str(e), reader)
    if Path(model).exists():
        cfg = read_config(Path(model))
        tok = from_folder(Path(model))
        return ModelSource(model, "checkpoint", cfg, tok, None if tok else f"{model} has no tokenizer.json")
    close = difflib.get_close_matches(model, list(LLM_CONFIGS), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UserError(f"unknown LLM preset or checkpoint folder {model!r}{hint} (presets: {', '.join(LLM_CONFIGS)})")


def load_model(src: ModelSource, device: torch.device, dtype: torch.dtype, seed: int, native: bool = False):
    """(model, a record of its source, load seconds): seeded random init for a preset, else the
    file's or folder's weights, in `dtype` on `device` (`native`: a GGUF file's quantized blocks kept)."""
    t = time.perf_counter()
    if src.kind == "preset":
        lm, record = build_llm(src.cfg, device, dtype, seed), {"kind": "random-init", "seed": seed}
    elif src.kind == "gguf":
        lm, record = load_gguf(src.path, device, dtype, src.reader, native=native)
    else:
        lm = load_checkpoint(src.path, device, dtype, src.cfg)
        record = {"kind": "checkpoint", "path": str(src.path.resolve())}
    return lm, record, time.perf_counter() - t
