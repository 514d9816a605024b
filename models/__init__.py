"""The model registry: industry presets of vision models, built from their architecture.

`list_presets("steel-*")`, `get_preset(name)` and `build_model(preset, seed, weights)` are the API;
the first use of any of them imports torch and registers every preset defined in
`models/vision.py`. Importing the package alone (or `models.errors`) stays light, so the command
line starts without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.registry import Preset, get_preset, list_presets, register
    from models.weights import build_model

__all__ = ["Preset", "build_model", "get_preset", "list_presets", "register"]
_HOME = {"build_model": "models.weights"} | dict.fromkeys(("Preset", "get_preset", "list_presets", "register"),
                                                          "models.registry")  # fmt: skip


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    importlib.import_module("models.vision")  # registers the presets
    return getattr(importlib.import_module(_HOME[name]), name)
