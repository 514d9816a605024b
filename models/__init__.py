"""The model registry: industry presets of vision models, built from their architecture.

`list_presets("steel-*")`, `get_preset(name)` and `build_model(preset, seed, weights)` are the API;
importing this package registers every preset defined in `models/vision.py`.
"""

from models import vision as _vision  # noqa: F401  (registers the presets)
from models.registry import Preset, get_preset, list_presets, register
from models.weights import build_model

__all__ = ["Preset", "build_model", "get_preset", "list_presets", "register"]
