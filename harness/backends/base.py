"""The interface every backend implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch


class BackendUnavailable(Exception):
    """This backend cannot run here (missing package or device), or not at this precision."""


@dataclass
class Prepared:
    """A model made ready by a backend: `run` maps a device input batch to a device output."""

    run: Callable[[torch.Tensor], torch.Tensor]
    compile_s: float  # export / compile / engine build, measured apart from everything else
    info: dict = field(default_factory=dict)  # what was built: mode, providers, file, cache ...


@dataclass
class PrepareContext:
    """What a backend may need beyond the model: identity for caches, calibration inputs."""

    model_key: str  # e.g. "steel-defect-mobilenetv3-random-init-seed0": names cached exports
    cache_dir: Path
    calibration: list[torch.Tensor] = field(default_factory=list)  # fp32 host batches (int8)
    compile_mode: str = "auto"
    memory_format: str = "contiguous"  # "channels_last": the torch backends run NHWC (runner.memory_format)
    ort_options: dict = field(default_factory=dict)  # ONNX Runtime CUDA/TensorRT provider options (--ort-option)


class Backend:
    name = "base"
    precisions: tuple[str, ...] = ()
    fp32_input = False  # True: takes fp32 batches at every precision (it converts inside, as OpenVINO does)

    def available(self, device: torch.device) -> tuple[bool, str]:
        """(usable here?, why or why not)."""
        raise NotImplementedError

    def prepare(self, model: torch.nn.Module, example: torch.Tensor, precision: str, ctx: PrepareContext) -> Prepared:
        """Make `model` (fp32, on the target device) runnable at `precision`; `example` is a device
        input batch in fp32. Raises BackendUnavailable with one clear line when it cannot."""
        raise NotImplementedError

    def check(self, device: torch.device, precision: str) -> None:
        ok, why = self.available(device)
        if not ok:
            raise BackendUnavailable(f"backend {self.name} is not available here: {why}")
        if precision not in self.precisions:
            raise BackendUnavailable(
                f"backend {self.name} does not run {precision}; it runs {', '.join(self.precisions)}"
            )
