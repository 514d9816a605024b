"""torch eager: the model as PyTorch runs it, cast to the run's precision."""

from __future__ import annotations

import time

import torch

from harness.backends.base import Backend, BackendUnavailable, PrepareContext, Prepared
from harness.devices import TORCH_DTYPES


def cast_model(model: torch.nn.Module, device: torch.device, precision: str) -> torch.nn.Module:
    if device.type == "cpu" and precision == "fp16":
        raise BackendUnavailable("fp16 on the CPU is not supported by the torch backends; use fp32 or bf16")
    return model.to(device, TORCH_DTYPES[precision])


class TorchEager(Backend):
    name = "torch"
    precisions = ("fp32", "fp16", "bf16")

    def available(self, device: torch.device) -> tuple[bool, str]:
        return True, f"torch {torch.__version__}"

    def prepare(self, model, example, precision, ctx: PrepareContext) -> Prepared:
        self.check(example.device, precision)
        t = time.perf_counter()
        m = cast_model(model, example.device, precision)
        dtype = TORCH_DTYPES[precision]

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return m(x.to(dtype))

        return Prepared(run, time.perf_counter() - t, {"dtype": str(dtype)})
