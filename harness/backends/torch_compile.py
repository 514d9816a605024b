"""torch.compile: Inductor-compiled model; compile time (the first calls) reported apart.

Modes: default, reduce-overhead (CUDA graphs on a GPU), max-autotune.
"""

from __future__ import annotations

import time

import torch

from harness.backends.base import Backend, PrepareContext, Prepared
from harness.backends.torch_eager import cast_model, memory_format_of
from harness.devices import TORCH_DTYPES
from harness.timing import device_sync

MODES = ("default", "reduce-overhead", "max-autotune")


class TorchCompile(Backend):
    name = "torch-compile"
    precisions = ("fp32", "fp16", "bf16")

    def available(self, device: torch.device) -> tuple[bool, str]:
        try:
            import torch._inductor
        except Exception as e:  # pragma: no cover - depends on the install
            return False, f"Inductor does not import: {e}"
        return True, f"torch {torch.__version__} Inductor"

    def prepare(self, model, example, precision, ctx: PrepareContext) -> Prepared:
        self.check(example.device, precision)
        mode = ctx.compile_mode if ctx.compile_mode in MODES else "default"
        m = cast_model(model, example.device, precision, ctx.memory_format)
        dtype, fmt = TORCH_DTYPES[precision], memory_format_of(ctx.memory_format)
        compiled = torch.compile(m, mode=mode, dynamic=False)

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return compiled(x.to(dtype, memory_format=fmt))

        t = time.perf_counter()
        for _ in range(2):  # compile, and for reduce-overhead record the CUDA graph
            run(example)
        device_sync(example.device)
        info = {"mode": mode, "dtype": str(dtype), "cuda_graphs": mode == "reduce-overhead" and example.is_cuda,
                "memory_format": ctx.memory_format}  # fmt: skip
        return Prepared(run, time.perf_counter() - t, info)
