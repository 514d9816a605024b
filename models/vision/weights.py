"""Building a preset's model: seeded random init, or a user's weights file loaded safely."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from models.errors import UserError, first_line
from models.vision.preset import Preset


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or a torch file, never unpickling arbitrary objects."""
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        text = str(e)
        if "weights only load failed" in text.lower():  # never pass on torch's advice: weights_only=False
            if "allowed global" in text or "Unsupported global" in text:
                raise UserError(
                    f"weights file {path} holds Python objects or code, not only tensors; modelpower "
                    "loads tensors only (a plain state dict, or .safetensors)"
                ) from None
            why = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
            reason = why.group(1)[:200] if why else "not a plain state dict"
            raise UserError(f"cannot read weights file {path}: the tensors-only loader refused it ({reason})") from None
        reason = first_line(e, 200)
        raise UserError(f"cannot read weights file {path}: {reason}") from None
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"weights file {path} does not hold a state dict of tensors")
    bad = next((k for k in state if not isinstance(k, str)), None)
    if bad is not None:
        raise UserError(f"weights file {path} has a key that is not a parameter name: {type(bad).__name__} {bad!r:.40}")
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel/DDP
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def first_mismatch(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """A sentence naming the first key where `state` does not fit `model`, or None if it fits."""
    expected = model.state_dict()
    for key, t in expected.items():
        if key not in state:
            return f"key {key!r} is missing from the file"
        if tuple(state[key].shape) != tuple(t.shape):
            return f"key {key!r} has shape {list(state[key].shape)} in the file, {list(t.shape)} in the model"
    for key in state:
        if key not in expected:
            return f"key {key!r} in the file is not in the model"
    return None


def check_weights(preset: Preset, path: Path) -> None:
    """Fail early, with one line, if `path` cannot be read or does not fit the preset's model.

    The model is built on the meta device: shapes only, no memory, no compute.
    """
    state = read_state_dict(Path(path))
    with torch.device("meta"):
        model = preset.builder(preset.num_classes)
    problem = first_mismatch(model, state)
    if problem:
        raise UserError(f"weights file {path} does not match model {preset.name}: {problem}")


def calibrate_batchnorm(model: torch.nn.Module, input_hw: tuple[int, int], seed: int) -> bool:
    """Re-estimate BatchNorm running statistics on seeded random inputs (random-init models only).

    With the default running mean 0 and variance 1, eval-mode BatchNorm is the identity, and deep
    random networks shrink their activations layer by layer: MobileNetV3's logits came out near
    1e-10 and EfficientNet-B0's near 1e-13, below fp16's smallest subnormal (6e-8), so fp16 runs
    computed zeros (seen on an H100). Two batches of 4 normal-noise inputs, at most 256 pixels a
    side, in train mode with a cumulative average, put every layer back near unit scale. Returns
    whether the model has BatchNorm layers.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return False
    h, w = input_hw
    f = min(1.0, 256 / max(h, w))
    small = max(32, int(h * f) // 32 * 32), max(32, int(w * f) // 32 * 32)
    momenta = [bn.momentum for bn in bns]
    try:
        _calibrate(model, bns, small, seed)
    except Exception:  # an architecture that only runs at its own size (Inception's pooling, MaxViT's windows)
        try:
            _calibrate(model, bns, input_hw, seed)
        except Exception as e:
            raise UserError(
                f"cannot run a random-init {type(model).__name__} at {h}x{w} to calibrate "
                f"BatchNorm: {first_line(e, 160)}"
            ) from None
    for bn, m in zip(bns, momenta, strict=True):
        bn.momentum = m
    model.eval()
    return True


def _calibrate(model: torch.nn.Module, bns: list, hw: tuple[int, int], seed: int) -> None:
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average over the calibration batches
    g = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, *hw, generator=g))


def pixel_noise(preset: Preset, seed: int, count: int = 4) -> torch.Tensor:
    """Seeded uniform 0..255 pixels normalized as the preset's input (what generated frames are), at
    most 256 pixels a side: [count, 3, h, w] float32."""
    h, w = preset.input_hw
    f = min(1.0, 256 / max(h, w))
    h, w = max(32, int(h * f) // 32 * 32), max(32, int(w * f) // 32 * 32)
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (count, 3, h, w), generator=g).float()
    return (x - torch.tensor(preset.mean).view(1, 3, 1, 1)) / torch.tensor(preset.std).view(1, 3, 1, 1)


def build_model(preset: Preset, seed: int = 0, weights: Path | None = None) -> tuple[torch.nn.Module, dict]:
    """The preset's model in eval mode on the CPU, and a record of where its weights came from.

    Random init is seeded, with BatchNorm statistics calibrated on seeded noise (calibrate_batchnorm)."""
    torch.manual_seed(seed)
    model = preset.builder(preset.num_classes).eval()
    if weights is None:
        record = {"kind": "random-init", "seed": seed}
        if calibrate_batchnorm(model, preset.input_hw, seed):
            record["batchnorm"] = "running statistics from 2 x 4 seeded noise inputs"
        if hasattr(model, "init_prior"):  # detectors: a trained detector's candidate counts (models/vision/detector.py)
            record["prior"] = model.init_prior(pixel_noise(preset, seed), preset.input_hw)
        return model, record
    path = Path(weights)
    state = read_state_dict(path)
    problem = first_mismatch(model, state)
    if problem:
        raise UserError(f"weights file {path} does not match model {preset.name}: {problem}")
    model.load_state_dict(state, strict=True)
    return model, {"kind": "file", "path": str(path.resolve()), "sha256": sha256_file(path)}
