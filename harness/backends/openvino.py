"""OpenVINO: the exported ONNX model compiled by Intel's CPU runtime (which also runs on AMD x86).

- fp32; bf16 (`INFERENCE_PRECISION_HINT`) where the CPU has AVX-512 BF16 or AMX; int8 from the same
  ONNX Runtime static quantization (QDQ, on the same calibration batches) the onnxruntime backend
  runs, which OpenVINO reads as an int8 graph. (NNCF's own post-training quantization is not used.)
- Compiled with the LATENCY performance hint: the harness sends one batch at a time and waits for it.
- The compiled-model cache (`CACHE_DIR`) lives beside the ONNX cache, so a second run skips the
  compile; `compile_s` is the export, the read and the compile, measured apart.
- An Intel GPU, where OpenVINO sees one, is not used here: modelpower's devices are `cpu` and `cuda`.
- Known problem: with OpenVINO loaded in a pytest process, a later LLM test (Numba and torch threads)
  crashed with a segmentation fault in CI; the test install leaves it out until that is understood.
"""

from __future__ import annotations

import time

import torch

from harness.backends.base import Backend, BackendUnavailable, PrepareContext, Prepared
from harness.backends.onnx_export import cached_onnx
from harness.errors import first_line

HINT = "LATENCY"


class OpenVino(Backend):
    name = "openvino"
    precisions = ("fp32", "bf16", "int8")

    def available(self, device: torch.device) -> tuple[bool, str]:
        try:
            import openvino as ov
        except ImportError:
            return False, "openvino is not installed (pip install 'modelpower[openvino]')"
        if device.type != "cpu":
            return False, f"modelpower runs OpenVINO on the CPU only (this run is on {device})"
        return True, f"openvino {ov.__version__.split('-')[0]}, CPU, {HINT} hint"

    def check(self, device: torch.device, precision: str) -> None:
        super().check(device, precision)
        if precision == "bf16" and "BF16" not in _capabilities():
            raise BackendUnavailable("openvino: this CPU has no bf16 support (AVX-512 BF16 or AMX); use fp32 or int8")

    def prepare(self, model, example, precision, ctx: PrepareContext) -> Prepared:
        import openvino as ov

        self.check(example.device, precision)
        t = time.perf_counter()
        calib = [b.cpu().float().numpy() for b in ctx.calibration]
        onnx_precision = "int8" if precision == "int8" else "fp32"
        path, export_s, cached = cached_onnx(model, example, onnx_precision, ctx.model_key, ctx.cache_dir, calib)
        core = ov.Core()
        cache = ctx.cache_dir / "openvino"
        cache.mkdir(parents=True, exist_ok=True)
        config = {"PERFORMANCE_HINT": HINT, "CACHE_DIR": str(cache),
                  "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}  # fmt: skip
        try:
            compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except Exception as e:
            raise BackendUnavailable(f"openvino could not compile {path.name}: {first_line(e, 200)}") from None
        request = compiled.create_infer_request()

        def run(x: torch.Tensor) -> torch.Tensor:
            request.infer({0: x.float().contiguous().numpy()})
            return torch.from_numpy(request.get_output_tensor(0).data.copy())

        run(example)  # first inference (memory allocation) outside the window
        info = {
            "onnx": str(path), "cached_export": cached, "export_s": export_s, "openvino": ov.__version__,
            "hint": HINT, "inference_precision": config["INFERENCE_PRECISION_HINT"], "cache_dir": str(cache),
        }  # fmt: skip
        return Prepared(run, time.perf_counter() - t, info)


def _capabilities() -> list[str]:
    try:
        import openvino as ov

        return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:
        return []
