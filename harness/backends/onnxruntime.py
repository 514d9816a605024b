"""ONNX Runtime: the exported model through the CPU, CUDA (IO binding: inputs and outputs stay on
the device) or TensorRT execution provider (engines cached in a folder the user names)."""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from harness.backends.base import Backend, BackendUnavailable, PrepareContext, Prepared
from harness.backends.onnx_export import cached_onnx
from harness.errors import first_line

NP_TYPES = {torch.float32: np.float32, torch.float16: np.float16}


class OnnxRuntime(Backend):
    def __init__(self, tensorrt: bool):
        self.tensorrt = tensorrt
        self.name = "onnxruntime-trt" if tensorrt else "onnxruntime"
        self.precisions = ("fp32", "fp16", "int8")

    def _provider(self, device: torch.device) -> str:
        if self.tensorrt:
            return "TensorrtExecutionProvider"
        return "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"

    def available(self, device: torch.device) -> tuple[bool, str]:
        try:
            import onnxruntime as ort  # optional at run time: the backend says it is unavailable without it
        except ImportError:
            return False, "onnxruntime is not installed"
        provider = self._provider(device)
        if provider not in ort.get_available_providers():
            return False, f"onnxruntime {ort.__version__} has no {provider}"
        if provider != "CPUExecutionProvider" and device.type != "cuda":
            return False, f"{provider} needs a CUDA device (this run is on {device})"
        return True, f"onnxruntime {ort.__version__}, {provider}"

    def prepare(self, model, example, precision, ctx: PrepareContext) -> Prepared:
        import onnxruntime as ort  # loaded by the runs that use this backend only

        self.check(example.device, precision)
        device = example.device
        provider = self._provider(device)
        if precision == "fp16" and provider == "CPUExecutionProvider":
            raise BackendUnavailable("onnxruntime's CPU provider does not run fp16 convolutions; use fp32 or int8")
        t = time.perf_counter()
        calib = [b.cpu().float().numpy() for b in ctx.calibration]
        path, export_s, cached = cached_onnx(model, example, precision, ctx.model_key, ctx.cache_dir, calib)
        options = dict(ctx.ort_options) if provider != "CPUExecutionProvider" else {}
        if self.tensorrt:
            engines = ctx.cache_dir / "trt"
            engines.mkdir(parents=True, exist_ok=True)
            options |= {
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(engines),
                "trt_fp16_enable": precision == "fp16",
                "trt_int8_enable": precision == "int8",
            }
        providers = [(provider, options)] if options else [provider]
        if provider != "CPUExecutionProvider":
            providers.append("CPUExecutionProvider")
        if provider != "CPUExecutionProvider" and hasattr(ort, "preload_dlls"):
            ort.preload_dlls()  # CUDA/cuDNN libraries from the nvidia-* wheels torch brought
        try:
            sess = ort.InferenceSession(str(path), providers=providers)
        except Exception as e:  # a provider option ORT rejects (--ort-option) is one line
            raise BackendUnavailable(f"onnxruntime refused the session: {first_line(e, 200)}") from None
        if provider not in sess.get_providers():  # ORT falls back silently when a provider fails to load
            raise BackendUnavailable(
                f"onnxruntime could not load {provider} (the session runs on {', '.join(sess.get_providers())})"
            )
        in_type = torch.float16 if precision == "fp16" else torch.float32
        graph = any(
            str(options.get(k, "0")).strip().lower() in ("1", "true")
            for k in ("enable_cuda_graph", "trt_cuda_graph_enable")
        )
        run = _device_runner(sess, device, cuda_graph=graph) if device.type == "cuda" else _host_runner(sess)

        def run_typed(x: torch.Tensor) -> torch.Tensor:
            return run(x.to(in_type).contiguous())

        run_typed(example)  # session warm-up; TensorRT builds (or loads) its engine here
        info = {
            "onnx": str(path),
            "cached_export": cached,
            "export_s": export_s,
            "providers": sess.get_providers(),
            "trt_engine_cache": options.get("trt_engine_cache_path"),
            "provider_options": sess.get_provider_options().get(provider, {}) if options else None,
        }
        return Prepared(run_typed, time.perf_counter() - t, info)


def _host_runner(sess, names: tuple[str, str] = ("input", "output")):
    inp, outp = names

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(sess.run([outp], {inp: x.numpy()})[0])

    return run


def _device_runner(sess, device: torch.device, names: tuple[str, str] = ("input", "output"), cuda_graph: bool = False):
    """IO binding: the input is read and the output written in device memory, no host copies.
    Outputs other than `names[1]` (a user's model may have several) stay where ORT puts them.

    ORT computes on its own stream: the caller's stream is synchronized first, so the input is
    complete before ORT reads it, and `run_with_iobinding` returns once the output is written. Each
    call gets its own output tensor (two LoadGen workers may call at once). With ORT's CUDA graph
    (`--ort-option enable_cuda_graph=1`) the addresses must not change between runs: the input is
    copied into a static buffer, the output is the static buffer, and calls take a lock."""
    inp, outp = names
    others = [o.name for o in sess.get_outputs() if o.name != outp]
    shapes: dict[tuple, tuple] = {}
    static: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
    lock = threading.Lock()
    index = device.index or 0

    def bind(x: torch.Tensor, y: torch.Tensor):
        io = sess.io_binding()
        io.bind_input(inp, "cuda", index, NP_TYPES[x.dtype], tuple(x.shape), x.data_ptr())
        io.bind_output(outp, "cuda", index, NP_TYPES[y.dtype], tuple(y.shape), y.data_ptr())
        for name in others:
            io.bind_output(name, "cuda", index)
        return io

    def run(x: torch.Tensor) -> torch.Tensor:
        key = tuple(x.shape)
        if key not in shapes:  # learn the output shape once per input shape
            host = sess.run([outp], {inp: x.cpu().numpy()})[0]
            shapes[key] = (host.shape, torch.from_numpy(host).dtype)
        torch.cuda.current_stream(device).synchronize()
        if not cuda_graph:
            y = torch.empty(shapes[key][0], dtype=shapes[key][1], device=device)
            sess.run_with_iobinding(bind(x, y))
            return y
        with lock:
            if key not in static:
                static[key] = (torch.empty_like(x), torch.empty(shapes[key][0], dtype=shapes[key][1], device=device))
            sx, sy = static[key]
            sx.copy_(x)
            torch.cuda.current_stream(device).synchronize()
            sess.run_with_iobinding(bind(sx, sy))
            y = sy.clone()
            torch.cuda.current_stream(device).synchronize()  # the copy is done before another call replays
            return y

    return run


def file_runner(sess, device: torch.device, input_name: str, output_name: str):
    """A user's ONNX session as a `Prepared.run`: a device batch in, its `output_name` out (on the device)."""
    names = (input_name, output_name)
    return _device_runner(sess, device, names) if device.type == "cuda" else _host_runner(sess, names)
