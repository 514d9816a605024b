"""The models: `models/vision/` (industry presets of vision models, built from their architecture;
timm/torchvision classifiers by name; our detector; weight files) and `models/llm/` (decoder LLMs:
presets, the model, checkpoints, GGUF files, tokenizers). `models.errors` holds the one-line user
error both raise.

The vision registry's API is here: `list_presets("steel-*")`, `get_preset(name)`,
`build_model(preset, seed, weights)`; the first use of any of them imports torch and registers the
presets of `models/vision/presets.py`. Importing the package alone (or `models.errors`) stays
light, so the command line starts without loading torch.

May import: kernels.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.vision.preset import Preset
    from models.vision.registry import get_preset, list_presets, register
    from models.vision.weights import build_model

__all__ = ["Preset", "build_model", "get_preset", "list_presets", "register"]
_HOME = {
    "Preset": "models.vision.preset",
    "build_model": "models.vision.weights",
    "get_preset": "models.vision.registry",
    "list_presets": "models.vision.registry",
    "register": "models.vision.registry",
}


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    importlib.import_module("models.vision.presets")  # registers the presets
    return getattr(importlib.import_module(_HOME[name]), name)
