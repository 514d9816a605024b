"""torch eager: the model as PyTorch runs it, cast to the run's precision."""

from __future__ import annotations

import time

import torch

from harness.backends.base import Backend, BackendUnavailable, PrepareContext, Prepared
from harness.machine.devices import TORCH_DTYPES


def memory_format_of(name: str) -> torch.memory_format:
    return torch.channels_last if name == "channels_last" else torch.contiguous_format


def cast_model(
    model: torch.nn.Module, device: torch.device, precision: str, memory_format: str = "contiguous"
) -> torch.nn.Module:
    """The model on `device` at `precision`, its 4-D weights in `memory_format` (channels_last:
    cuDNN and oneDNN then run NHWC convolutions, with no layout change between layers)."""
    if device.type == "cpu" and precision == "fp16":
        raise BackendUnavailable("fp16 on the CPU is not supported by the torch backends; use fp32 or bf16")
    return model.to(device, TORCH_DTYPES[precision]).to(memory_format=memory_format_of(memory_format))


class TorchEager(Backend):
    name = "torch"
    precisions = ("fp32", "fp16", "bf16")

    def available(self, device: torch.device) -> tuple[bool, str]:
        return True, f"torch {torch.__version__}"

    def prepare(self, model, example, precision, ctx: PrepareContext) -> Prepared:
        self.check(example.device, precision)
        t = time.perf_counter()
        m = cast_model(model, example.device, precision, ctx.memory_format)
        dtype, fmt = TORCH_DTYPES[precision], memory_format_of(ctx.memory_format)

        def run(x: torch.Tensor) -> torch.Tensor:  # no copy when the input is already in dtype and layout
            with torch.inference_mode():
                return m(x.to(dtype, memory_format=fmt))

        return Prepared(run, time.perf_counter() - t, {"dtype": str(dtype), "memory_format": ctx.memory_format})
