"""torch.compile: Inductor-compiled model; compile time (the first calls) reported apart.

Modes (`--compile-mode`):
- default: Inductor's fused Triton (GPU) or C++ (CPU) kernels, launched one by one;
- reduce-overhead: the same kernels replayed as a CUDA graph at the run's fixed shapes (no
  per-kernel launch cost; on the CPU the same as default);
- max-autotune: Inductor also benchmarks GEMM/convolution implementations (Triton templates
  against cuBLAS/cuDNN) and uses CUDA graphs; the longest compile;
- auto (the default): on a GPU, reduce-overhead and default are each compiled, checked against the
  uncompiled model at the run's precision and timed on the example batch; the fastest that agrees
  runs, and `backend_info["modes_tried"]` keeps every trial. On the CPU: default.
Inductor keeps its compiled kernels and FX graphs on disk (TORCHINDUCTOR_CACHE_DIR, by default
/tmp/torchinductor_<user>), so a later run of the same model and shapes reuses them; the folder is
recorded in `backend_info["inductor_cache"]`.
"""

from __future__ import annotations

import copy
import os
import statistics
import time

import torch

from harness.backends.base import Backend, PrepareContext, Prepared
from harness.backends.torch_eager import cast_model, memory_format_of
from harness.machine.devices import TORCH_DTYPES
from harness.measure.agreement import TOLERANCE
from harness.measure.timing import device_sync

MODES = ("auto", "default", "reduce-overhead", "max-autotune")
AUTO_GPU_MODES = ("reduce-overhead", "default")


def _inductor_cache() -> str | None:
    """The folder Inductor caches compiled kernels in."""
    try:
        from torch._inductor.runtime.cache_dir_utils import cache_dir  # inductor loads in seconds: compiled runs only

        return cache_dir()
    except Exception:  # pragma: no cover - private API moved
        return os.environ.get("TORCHINDUCTOR_CACHE_DIR")


def pick_mode(trials: dict[str, dict]) -> str | None:
    """The fastest mode whose output agreed with the uncompiled model; None if none did."""
    ok = {m: t["ms"] for m, t in trials.items() if t["agrees"]}
    return min(ok, key=ok.get) if ok else None


class TorchCompile(Backend):
    name = "torch-compile"
    precisions = ("fp32", "fp16", "bf16")

    def available(self, device: torch.device) -> tuple[bool, str]:
        try:
            import torch._inductor  # (as above)
        except Exception as e:  # pragma: no cover - depends on the install
            return False, f"Inductor does not import: {e}"
        return True, f"torch {torch.__version__} Inductor"

    def prepare(self, model, example, precision, ctx: PrepareContext) -> Prepared:
        self.check(example.device, precision)
        m = cast_model(model, example.device, precision, ctx.memory_format)
        mode = ctx.compile_mode if ctx.compile_mode in MODES else "auto"
        if mode != "auto" or not example.is_cuda:
            mode = "default" if mode == "auto" else mode
            run, compile_s = self._compiled(m, example, precision, ctx.memory_format, mode)
            return Prepared(run, compile_s, self._info(mode, precision, example, ctx))
        with torch.inference_mode():  # the uncompiled model at the run's precision: what a mode must agree with
            ref = m(example.to(TORCH_DTYPES[precision], memory_format=memory_format_of(ctx.memory_format))).float()
        trials, runs = {}, {}
        for candidate in AUTO_GPU_MODES:
            # a copy per mode: two torch.compile wrappers of one module may share Dynamo's cache entries
            run, compile_s = self._compiled(copy.deepcopy(m), example, precision, ctx.memory_format, candidate)
            out = run(example).float()
            err = float(((out - ref).abs().max() / ref.abs().max().clamp(min=1e-12)).item())
            ms = statistics.median(self._time(run, example) for _ in range(5)) * 1e3
            trials[candidate] = {
                "compile_s": compile_s,
                "ms": ms,
                "rel_err": err,
                "agrees": err <= TOLERANCE[precision],
            }
            runs[candidate] = run
        chosen = pick_mode(trials) or "default"
        info = self._info(chosen, precision, example, ctx) | {"modes_tried": trials, "auto": True}
        return Prepared(runs[chosen], sum(t["compile_s"] for t in trials.values()), info)

    @staticmethod
    def _compiled(m, example, precision, memory_format, mode):
        """(run, seconds to compile and warm it up) for one mode."""
        dtype, fmt = TORCH_DTYPES[precision], memory_format_of(memory_format)
        compiled = torch.compile(m, mode=mode, dynamic=False)

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return compiled(x.to(dtype, memory_format=fmt))

        t = time.perf_counter()
        for _ in range(2):  # compile, and for reduce-overhead record the CUDA graph
            run(example)
        device_sync(example.device)
        return run, time.perf_counter() - t

    @staticmethod
    def _time(run, example) -> float:
        device_sync(example.device)
        t = time.perf_counter()
        run(example)
        device_sync(example.device)
        return time.perf_counter() - t

    @staticmethod
    def _info(mode, precision, example, ctx) -> dict:
        return {
            "mode": mode,
            "dtype": str(TORCH_DTYPES[precision]),
            "memory_format": ctx.memory_format,
            "cuda_graphs": mode in ("reduce-overhead", "max-autotune") and example.is_cuda,
            "inductor_cache": _inductor_cache(),
        }
