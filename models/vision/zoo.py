"""Classification architectures of timm and torchvision by name: `timm:NAME`, `torchvision:NAME`.

Each becomes a `Preset` on demand (task classify, 1000 classes, industry "-"), built with seeded
random init (BatchNorm calibrated as for presets) or the user's --weights, at the input size and
normalisation of the architecture's default pretrained configuration (timm's `pretrained_cfg`,
torchvision's weights transforms); nothing is downloaded.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools

import torchvision

from models.errors import UserError
from models.vision.preset import IMAGENET_MEAN, IMAGENET_STD, Preset

SOURCES = ("timm", "torchvision")


def is_zoo_name(name: str) -> bool:
    return name.split(":", 1)[0] in SOURCES and ":" in name


@functools.cache
def _torchvision_names() -> tuple[str, ...]:
    return tuple(torchvision.models.list_models(module=torchvision.models))


@functools.cache
def _timm_names() -> tuple[str, ...]:
    import timm  # only for timm: names (its import costs seconds more than torchvision's)

    return tuple(timm.list_models())


def list_names(source: str, pattern: str = "*") -> list[str]:
    """The architectures `source` can build whose name matches a glob."""
    names = _timm_names() if source == "timm" else _torchvision_names()
    return [n for n in names if fnmatch.fnmatch(n, pattern)]


def _timm_builder(arch: str, n: int):
    import timm  # only for timm: models (its import costs seconds more than torchvision's)

    return timm.create_model(arch, pretrained=False, num_classes=n)


def _torchvision_builder(arch: str, n: int):
    return torchvision.models.get_model(arch, weights=None, num_classes=n)


def zoo_preset(name: str) -> Preset:
    """`timm:NAME` or `torchvision:NAME` as a preset; a UserError suggesting close names if unknown."""
    source, _, arch = name.partition(":")
    names = _timm_names() if source == "timm" else _torchvision_names()
    base = arch.split(".", 1)[0] if source == "timm" else arch  # timm: resnet18.a1_in1k names a pretrained tag
    if base not in names:
        close = difflib.get_close_matches(base[:100], names, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(f'{source}:{c}' for c in close)}?" if close else ""
        shown = arch if len(arch) <= 80 else arch[:77] + "..."
        raise UserError(
            f"{source} has no classification architecture {shown!r}{hint} (`modelpower models '{source}:*'` lists them)"
        )
    if source == "timm":
        import timm  # only for timm: models

        try:
            cfg = timm.get_pretrained_cfg(arch)
        except (RuntimeError, ValueError, KeyError):
            raise UserError(
                f"timm has no pretrained configuration {arch!r} (`modelpower models 'timm:{base}*'`)"
            ) from None
        size = tuple(cfg.input_size[1:]) if cfg and cfg.input_size else (224, 224)
        mean = tuple(255 * v for v in cfg.mean) if cfg and cfg.mean else IMAGENET_MEAN
        std = tuple(255 * v for v in cfg.std) if cfg and cfg.std else IMAGENET_STD
        builder = functools.partial(_timm_builder, arch)
    else:
        size, mean, std = (224, 224), IMAGENET_MEAN, IMAGENET_STD
        try:
            crop = torchvision.models.get_model_weights(arch).DEFAULT.transforms.keywords.get("crop_size")
        except (AttributeError, ValueError, KeyError):
            crop = None
        if isinstance(crop, int):
            size = (crop, crop)
        builder = functools.partial(_torchvision_builder, arch)
    return Preset(
        name=name,
        industry="-",
        task="classify",
        arch=f"{source} {arch}",
        input_hw=size,
        num_classes=1000,
        builder=builder,
        description=f"{source} {arch}, ImageNet classes, random init unless --weights",
        mean=mean,
        std=std,
    )
