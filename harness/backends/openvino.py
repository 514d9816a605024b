"""OpenVINO: the exported ONNX model compiled by Intel's CPU runtime (which also runs on AMD x86).

- fp32; bf16 (`INFERENCE_PRECISION_HINT`) where the CPU has AVX-512 BF16 or AMX; int8 by NNCF's
  post-training quantization (OpenVINO's own tool: activations and weights int8, fast bias correction)
  of the fp32 model on the same calibration batches the other int8 paths use, saved as OpenVINO IR
  beside the ONNX cache so a second run skips it.
- Compiled with the LATENCY performance hint: the harness sends one batch at a time and waits for it.
- The compiled-model cache (`CACHE_DIR`) lives beside the ONNX cache, so a second run skips the
  compile; `compile_s` is the export, the read and the compile, measured apart.
- An Intel GPU, where OpenVINO sees one, is not used here: modelpower's devices are `cpu` and `cuda`.
- A user's ONNX file (`modelpower run model.onnx --backend openvino`) runs through `FileSession`, which
  answers like an onnxruntime session, so the ONNX-file paths take either engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from harness.backends.base import Backend, BackendUnavailable, PrepareContext, Prepared
from harness.backends.onnx_export import cached_onnx
from harness.errors import UserError

HINT = "LATENCY"


class OpenVino(Backend):
    name = "openvino"
    precisions = ("fp32", "bf16", "int8")
    fp32_input = True  # bf16 is an inference hint: the compiled model takes f32 and converts inside

    def available(self, device: torch.device) -> tuple[bool, str]:
        try:
            import openvino as ov  # the optional openvino extra
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
        import openvino as ov  # the optional openvino extra

        self.check(example.device, precision)
        t = time.perf_counter()
        path, export_s, cached = cached_onnx(model, example, "fp32", ctx.model_key, ctx.cache_dir, [])
        core = ov.Core()
        cache = ctx.cache_dir / "openvino"
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BackendUnavailable(f"openvino cannot use its model cache {cache}: {e.strerror or e}") from None
        quantize_s, ir = 0.0, None
        if precision == "int8":
            calib = [b.cpu().float().numpy() for b in ctx.calibration]
            digest = hashlib.sha256(b"".join(np.ascontiguousarray(b).tobytes() for b in calib)).hexdigest()[:12]
            # keyed by the calibration data too: other inputs (frames, sizes, batch) quantize anew
            ir, quantize_s = _nncf_int8(core, path, calib, cache / f"{path.stem}-nncf-int8-{digest}.xml")
        config = {
            "PERFORMANCE_HINT": HINT,
            "CACHE_DIR": str(cache),
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        }
        source = ir or path
        try:
            compiled = core.compile_model(core.read_model(str(source)), "CPU", config)
        except Exception as e:
            raise BackendUnavailable(f"openvino could not compile {source.name}: {ov_reason(e)}") from None
        local = threading.local()  # one infer request per calling thread: LoadGen's workers call at once

        def run(x: torch.Tensor) -> torch.Tensor:
            request = getattr(local, "request", None)
            if request is None:
                request = local.request = compiled.create_infer_request()
            request.infer({0: x.float().contiguous().numpy()})  # no copy when already fp32 and contiguous
            return torch.from_numpy(request.get_output_tensor(0).data.copy())

        run(example)  # first inference (memory allocation) outside the window
        info = {
            "onnx": str(path),
            "cached_export": cached,
            "export_s": export_s,
            "openvino": ov.__version__,
            "hint": HINT,
            "inference_precision": config["INFERENCE_PRECISION_HINT"],
            "cache_dir": str(cache),
        }
        if ir is not None:
            info |= {
                "int8": "NNCF post-training quantization",
                "ir": str(ir),
                "quantize_s": quantize_s,
                "calibration_samples": sum(len(b) for b in calib),
            }
        return Prepared(run, time.perf_counter() - t, info)


def _nncf_int8(core, onnx_path: Path, calibration: list[np.ndarray], xml: Path) -> tuple[Path, float]:
    """The fp32 ONNX model quantized by NNCF on `calibration` (each item a batch), saved as OpenVINO
    IR at `xml` (and its .bin); a cached IR is reused. Returns (path, seconds spent quantizing now)."""
    import openvino as ov  # the optional openvino extra

    if xml.is_file() and xml.with_suffix(".bin").is_file():
        return xml, 0.0
    try:
        import nncf  # the optional openvino extra
    except ImportError:
        raise BackendUnavailable("openvino int8 needs nncf (pip install 'modelpower[openvino]')") from None
    if not calibration:
        raise BackendUnavailable("openvino int8 needs calibration batches")
    t = time.perf_counter()
    nncf.set_log_level(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its progress bars
            quantized = nncf.quantize(
                core.read_model(str(onnx_path)),
                nncf.Dataset(calibration),
                preset=nncf.QuantizationPreset.MIXED,
                subset_size=sum(len(b) for b in calibration),
            )
    except Exception as e:
        raise BackendUnavailable(f"nncf could not quantize {onnx_path.name}: {ov_reason(e)}") from None
    # Saved under temporary names and renamed, .bin first: an interrupted save leaves no IR that loads.
    tmp = xml.with_name(f".{xml.stem}.{os.getpid()}.xml")
    try:
        ov.save_model(quantized, str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(tmp, xml)
    except (OSError, RuntimeError) as e:  # a cache folder that cannot be written
        for f in (tmp, tmp.with_suffix(".bin")):
            f.unlink(missing_ok=True)
        raise BackendUnavailable(f"openvino cannot save the int8 model in {xml.parent}: {ov_reason(e)}") from None
    return xml, time.perf_counter() - t


def ov_reason(e: BaseException, limit: int = 200) -> str:
    """OpenVINO's exception as one line that says why: its first line is only where it was raised
    ("Exception from src/inference/src/cpp/core.cpp:84:"), so the first line that is not that."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from ", "Check '"))]
    return (useful or lines or [type(e).__name__])[0][:limit]


def _capabilities() -> list[str]:
    try:
        import openvino as ov  # the optional openvino extra

        return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:
        return []


class FileSession:
    """A user's ONNX file compiled by OpenVINO's CPU plugin, answering like an onnxruntime
    `InferenceSession` (`run`, `get_outputs`, `get_providers`) so the ONNX-file paths take either.
    fp32 inference (`INFERENCE_PRECISION_HINT` f32: the file's own arithmetic, not a bf16 default);
    calls are serialized (one infer request)."""

    def __init__(self, path: Path):
        try:
            import openvino as ov  # the optional openvino extra
        except ImportError:
            raise UserError("openvino is not installed (pip install 'modelpower[openvino]')") from None
        core = ov.Core()
        config = {"PERFORMANCE_HINT": HINT, "INFERENCE_PRECISION_HINT": "f32"}
        try:
            self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except Exception as e:
            raise UserError(f"openvino cannot load {path}: {ov_reason(e)}") from None
        self.request = self.compiled.create_infer_request()
        self.version = ov.__version__.split("-")[0]
        self._outputs = [SimpleNamespace(name=o.get_any_name()) for o in self.compiled.outputs]
        self._lock = threading.Lock()

    def get_outputs(self) -> list[SimpleNamespace]:
        return self._outputs

    def get_providers(self) -> list[str]:
        return [f"openvino {self.version} CPU ({HINT} hint, f32)"]

    def run(self, names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        for port in self.compiled.inputs:  # OpenVINO would convert silently; onnxruntime refuses
            name = port.get_any_name()
            want = port.get_element_type().to_dtype()
            if name in feeds and feeds[name].dtype != want:
                raise ValueError(f"input {name!r} is {want}, given {feeds[name].dtype}")
        with self._lock:
            self.request.infer(feeds)
            return [self.request.get_tensor(n).data.copy() for n in names or [o.name for o in self._outputs]]
