"""One registry of model presets: a preset is an architecture at an industry's resolution and classes."""

from __future__ import annotations

import difflib
import fnmatch

from models.errors import UserError
from models.vision.preset import Preset
from models.vision.zoo import is_zoo_name, zoo_preset

_REGISTRY: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    """Add a preset; names are unique."""
    if preset.name in _REGISTRY:
        raise ValueError(f"preset {preset.name!r} is registered twice")
    _REGISTRY[preset.name] = preset
    return preset


def list_presets(pattern: str = "*") -> list[Preset]:
    """Registered presets whose name matches a glob pattern, in registration order."""
    return [p for n, p in _REGISTRY.items() if fnmatch.fnmatch(n, pattern)]


def get_preset(name: str) -> Preset:
    """The preset called `name` (or `timm:NAME` / `torchvision:NAME`, built on demand); a UserError
    suggesting close names if there is none."""
    if is_zoo_name(name):
        return zoo_preset(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"unknown model {name!r}{hint} (`modelpower models` lists them all)") from None
