"""The timed runner: one vision preset, one batch size, one device -> one result `Point`.

Follows docs/measurement.md ("Timing"): load and first call timed apart from the steady state; warm-up excluded;
a window ends when both `min_duration` and `min_iters` are met; the device is synchronized before a
timer is read. Two windows per point:
- staged: each stage (pre, h2d, infer, d2h, post) of a batch timed alone, for the breakdown;
- end to end: the pipeline as it really runs, a worker thread pre-processing batch i+1 while batch
  i is inferred and post-processed; throughput = samples completed in the window / window time.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numba
import numpy as np
import torch

from harness.backends import BACKENDS, BackendUnavailable, Prepared
from harness.backends.base import PrepareContext
from harness.errors import UserError, first_line
from harness.inputs import SEED
from harness.kernelbench import peers
from harness.machine.devices import TORCH_DTYPES, device_name
from harness.measure.agreement import TOLERANCE, agreement, not_checked
from harness.measure.energy import Meter
from harness.measure.flops import preset_flops_per_sample
from harness.measure.memory import is_oom
from harness.measure.metrics import point_metrics
from harness.measure.stats import latency_stats
from harness.measure.timing import device_sync, stream_sync
from harness.measure.window import Progress, Window, timed_window, window_closed
from harness.results.schema import Point
from harness.vision.detection import DetectHead
from harness.vision.images import ImageSource
from harness.vision.uploads import Uploads
from kernels import letterbox_normalize, seg_argmax, softmax_topk
from kernels.common.device import to_host
from models import Preset, build_model
from models.vision.weights import sha256_file

if TYPE_CHECKING:
    from harness.vision.onnx_model import OnnxModel

PRECISIONS = (*TORCH_DTYPES, "int8")


@dataclass
class RunSettings:
    device: torch.device
    precision: str = "fp32"
    warmup: int = Window.warmup
    min_duration: float = Window.min_duration
    min_iters: int = Window.min_iters
    seed: int = SEED
    topk: int = 5
    conf_thres: float = 0.25
    iou_thres: float = 0.45
    max_det: int = 300
    backend: str = "torch"
    compile_mode: str = "auto"
    cache_dir: Path = Path.home() / ".cache" / "modelpower"
    memory_format: str = "auto"  # auto, channels_last or contiguous (see memory_format below)
    ort_options: dict = field(default_factory=dict)  # ONNX Runtime CUDA/TensorRT provider options


MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
ONNX_FILE = "onnx file"  # key (ONNX_FILE, precision): a user's ONNX file is prepared once, at load


def memory_format(lm: LoadedModel, s: RunSettings) -> str:
    """The layout the model runs in. ONNX Runtime (it takes NCHW) and ONNX files: contiguous. On the
    torch backends: as asked, and auto is channels_last for a convolution model (cuDNN's and
    oneDNN's NHWC kernels; faster end to end on the 2-core reference CPU too)."""
    if s.backend not in ("torch", "torch-compile") or not isinstance(lm.model, torch.nn.Module):
        return "contiguous"
    if s.memory_format != "auto":
        return s.memory_format
    convs = any(isinstance(m, torch.nn.Conv2d) for m in lm.model.modules())
    return "channels_last" if convs else "contiguous"


@dataclass
class LoadedModel:
    preset: Preset
    # fp32 eager torch (an ONNX file: a second session of it): the agreement reference; None: there is none
    model: Callable[[torch.Tensor], torch.Tensor] | None
    weights: dict
    load_s: float
    params: int
    flops_per_sample: int
    prepared: dict = field(default_factory=dict)  # (backend, precision, mode) -> Prepared
    reference: str = "torch eager fp32, same input batch"  # what `model` is (None: why there is none)
    onnx: object | None = None  # an ONNX file's parsed model (harness.vision.onnx_model.OnnxModel), else None
    input_dtype: torch.dtype | None = None  # an ONNX file: the dtype its image input takes
    tolerance: str | None = None  # the precision whose agreement tolerance applies; None: the run's


def load_model(preset: Preset, settings: RunSettings, weights=None) -> LoadedModel:
    """Build (or load) the preset's model in fp32 on the device, timed. It stays untouched: it is
    the agreement reference; each backend prepares its own copy at the run's precision."""
    t0 = time.perf_counter()
    model, source = build_model(preset, seed=settings.seed, weights=weights)
    model = model.to(settings.device)
    device_sync(settings.device)
    load_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    flops = preset_flops_per_sample(preset.builder, preset.num_classes, preset.input_hw)
    return LoadedModel(preset, model, source, load_s, params, flops)


def load_onnx_model(om: OnnxModel | Path, opts, settings: RunSettings, engine: str = "onnxruntime") -> LoadedModel:
    """A user's ONNX file in our pipeline (`--task`): its session on the device, prepared once on
    `engine` (onnxruntime or openvino) at the precision its graph computes in (`onnx_model.graph_precision`,
    not its input type). The agreement reference is a second, independent execution of the file,
    never the measured session: ORT's CPU provider, with every graph optimization off when the run
    itself is on ORT's CPU provider (then OpenVINO, where installed, if that session cannot load);
    with none, points record "not checked". `om`: the file as `onnx_model.load_onnx` parsed it (or its path)."""
    from harness.backends.onnxruntime import file_runner  # (as above)
    from harness.vision import onnx_model as ox  # onnx loads in seconds: ONNX-file runs only

    t0 = time.perf_counter()
    om = om if isinstance(om, ox.OnnxModel) else ox.load_onnx(om)
    path = om.path
    preset, inp, in_precision = ox.task_preset(om, opts)
    graph = ox.graph_precision(om)[0]  # the file's own: its agreement tolerance, with the engine's
    precision, source = ox.graph_precision(om, engine, settings.device.type)  # what the engine runs it at
    sess, session_s = ox.session(om, settings.device.type, engine)
    out = sess.get_outputs()[0].name
    ref_sess, reference = _onnx_reference(om, sess, settings.device.type, engine)
    in_type = TORCH_DTYPES[in_precision]
    run = file_runner(sess, settings.device, inp, out)
    ref_model = None
    if ref_sess is not None:
        host_run = file_runner(ref_sess, torch.device("cpu"), inp, out)
        ref_model = lambda x: host_run(x.cpu().to(in_type))  # noqa: E731
    flops = ox.count_flops(om, {inp: (1, 3, *preset.input_hw)})
    weights = {"kind": "file", "path": str(Path(path).resolve()), "sha256": sha256_file(Path(path))}
    lm = LoadedModel(
        preset,
        ref_model,
        weights,
        time.perf_counter() - t0,
        ox.weights_of(om),
        flops,
        reference=reference,
        onnx=om,
        input_dtype=in_type,
        tolerance=max((graph, precision), key=lambda p: TOLERANCE.get(p, 0.0)),
    )
    info = {
        "onnx": str(Path(path).resolve()),
        "engine": engine,
        "providers": sess.get_providers(),
        "input": inp,
        "output": out,
        "det_format": preset.det_format if preset.task == "detect" else None,
        "precision_source": source,
    }
    lm.prepared[(ONNX_FILE, precision)] = Prepared(lambda x: run(x.to(in_type).contiguous()), session_s, info)
    return lm


def _onnx_reference(om: OnnxModel, sess, device_type: str, engine: str) -> tuple[object | None, str]:
    """(a second session of the file, what it is) for the agreement check, or (None, why there is
    none). Never the measured session `sess`: a run on ORT's CPU provider is checked against the
    file with every graph optimization off (no fusion, no constant folding, no NCHWc layout: other
    kernels on an unfused graph), or on OpenVINO where that does not load; any other run against
    ORT's CPU provider, another provider or engine."""
    from harness.vision import onnx_model as ox  # (as above)

    if device_type == "cpu" and engine == "onnxruntime":
        unfused = "onnxruntime's CPU provider with graph optimizations off (a second, unfused execution)"
        candidates = [("onnxruntime", False, unfused), ("openvino", True, "OpenVINO's CPU plugin")]
    else:
        candidates = [("onnxruntime", True, "onnxruntime's CPU provider")]
    tried = []
    for ref_engine, optimize, what in candidates:
        try:
            ref = ox.session(om, "cpu", ref_engine, optimize=optimize)[0]
        except UserError as e:
            tried.append(first_line(e, 160))
            continue
        if ref is sess:  # the measured session compared with itself checks nothing
            tried.append(f"{what} is the measured session itself")
            continue
        return ref, f"the ONNX file on {what}, same input batch"
    return None, "no independent reference: " + "; ".join(tried)


PREPROCESS = ("numba", "opencv", "torchvision")


class VisionPipeline:
    """The steps of one batch, as (name, function) pairs run in order on a shared context.

    The first step is host-side work that the end-to-end window overlaps with the previous batch.
    Host buffers (pinned on CUDA) are allocated once and double-buffered by `slot`.
    - numba on the CPU, or any path with host pre-processing:
      pre (host kernel) -> h2d (float batch, cast) -> infer -> d2h -> post (host)
    - numba on a GPU: stage (uint8 frames into pinned memory) -> h2d (uint8) -> pre (CUDA kernel)
      -> infer -> post (CUDA kernel; detection: none) -> d2h (results) [-> post on host: detection]
    """

    def __init__(self, lm: LoadedModel, batch_size: int, source: ImageSource, s: RunSettings, preprocess: str):
        if preprocess not in PREPROCESS:
            raise UserError(f"unknown --preprocess {preprocess!r}: use {', '.join(PREPROCESS)}")
        self.lm, self.bs, self.source, self.s, self.path = lm, batch_size, source, s, preprocess
        p = lm.preset
        self.cuda = s.device.type == "cuda"
        fp32_input = s.backend in BACKENDS and BACKENDS[s.backend].fp32_input  # int8 backends take fp32 too
        self.dtype = torch.float32 if fp32_input else TORCH_DTYPES.get(s.precision, torch.float32)
        if lm.input_dtype is not None:  # an ONNX file: the type its input takes (its math may be int8)
            self.dtype = lm.input_dtype
        self.run_model = None  # set by measure_point once the backend has prepared the model
        self.memory_format = memory_format(lm, s)  # the device kernel writes the model's layout directly
        self.head = DetectHead(p.det_format, p.input_hw) if p.task == "detect" else None
        self.swap_channels = source.bgr == p.rgb  # the frames' channel order is not the model's
        self.post_counts: list[tuple[float, float]] = []  # detection: (candidates, kept) per image, per batch
        sizes = {im.shape for im in source.images}
        self.device_pre = self.cuda and preprocess == "numba" and len(sizes) == 1
        if self.device_pre:
            (frame,) = sizes
            # The distinct frames sit in pinned memory once, as in a capture ring buffer; each
            # batch is copied frame by frame from there straight into a device buffer.
            self.pool = torch.from_numpy(np.stack(source.images)).pin_memory()
            self.frames = [torch.empty((batch_size, *frame), dtype=torch.uint8, device=s.device) for _ in range(2)]
            self.steps = [
                ("stage", self._stage),
                ("h2d", self._h2d),
                ("pre", self._pre_device),
                ("infer", self._infer),
            ]
            if p.task == "detect":
                self.steps += [("d2h", self._d2h), ("post", self._post_host)]
            else:
                self.steps += [("post", self._post_device), ("d2h", self._d2h_result)]
        else:
            shape = (batch_size, 3, *p.input_hw)
            self.host = [torch.empty(shape, dtype=torch.float32, pin_memory=self.cuda) for _ in range(2)]
            self.steps = [
                ("pre", self._pre_host),
                ("h2d", self._h2d),
                ("infer", self._infer),
                ("d2h", self._d2h),
                ("post", self._post_host),
            ]
        self.stage_names = tuple(name for name, _ in self.steps)

    # -- host-side first steps (run in the worker thread end to end)
    def _pre_host(self, ctx: dict) -> None:
        p = self.lm.preset
        imgs = self.source.batch(ctx["index"], self.bs)
        fn = {
            "numba": letterbox_normalize,
            "opencv": peers.opencv_letterbox,
            "torchvision": peers.torchvision_letterbox,
        }
        _, ctx["scales"], ctx["pads"] = fn[self.path](
            imgs,
            p.input_hw,
            p.mean,
            p.std,
            bgr_to_rgb=self.swap_channels,
            letterbox=p.letterbox,
            out=self.host[ctx["slot"]].numpy(),
        )
        ctx["orig_hw"] = np.array([im.shape[:2] for im in imgs], np.float64)

    def _stage(self, ctx: dict) -> None:
        n = len(self.source.images)
        ctx["frames"] = [(ctx["index"] * self.bs + j) % n for j in range(self.bs)]  # as ImageSource.batch
        ctx["orig_hw"] = np.tile(self.pool.shape[1:3], (self.bs, 1)).astype(np.float64)

    # -- device-side steps (main thread)
    def _h2d(self, ctx: dict) -> torch.Tensor:
        if self.device_pre:
            dst = self.frames[ctx["slot"]]
            for j, k in enumerate(ctx["frames"]):
                dst[j].copy_(self.pool[k], non_blocking=True)
            ctx["x"] = dst
        else:
            ctx["x"] = self.host[ctx["slot"]].to(self.s.device, self.dtype, non_blocking=True)
        return ctx["x"]

    def _pre_device(self, ctx: dict) -> None:
        p = self.lm.preset
        half = self.dtype == torch.float16  # the kernel writes float16 or float32; bf16 is cast after
        kernel_dtype = np.float16 if half else np.float32
        fmt = torch.channels_last if self.memory_format == "channels_last" else torch.contiguous_format
        x = torch.empty(
            (self.bs, 3, *p.input_hw),
            dtype=torch.float16 if half else torch.float32,
            device=self.s.device,
            memory_format=fmt,
        )
        _, ctx["scales"], ctx["pads"] = letterbox_normalize(
            ctx["x"],
            p.input_hw,
            p.mean,
            p.std,
            bgr_to_rgb=self.swap_channels,
            letterbox=p.letterbox,
            dtype=kernel_dtype,
            out=x,
        )
        ctx["x"] = x.to(self.dtype)

    def _infer(self, ctx: dict) -> None:
        ctx["y"] = self.run_model(ctx["x"])

    def _d2h(self, ctx: dict) -> None:
        ctx["out"] = ctx["y"].float().cpu().numpy()

    def _post_device(self, ctx: dict) -> None:
        y = ctx["y"].float().contiguous()
        if self.lm.preset.task == "classify":
            ctx["result"] = softmax_topk(y, min(self.s.topk, 64))
        else:
            ctx["result"] = (seg_argmax(y),)
        ctx["out"] = None

    def _d2h_result(self, ctx: dict) -> None:
        ctx["result"] = tuple(to_host(r) for r in ctx["result"])

    def _post_host(self, ctx: dict) -> None:
        y, task = ctx["out"], self.lm.preset.task
        torch_path = self.path != "numba"
        if task == "classify":
            peers.torch_softmax_topk(torch.from_numpy(y), self.s.topk) if torch_path else softmax_topk(y, self.s.topk)
        elif task == "segment":
            peers.torch_seg_argmax(torch.from_numpy(y)) if torch_path else seg_argmax(y)
        elif torch_path:
            dets, cand = self.head.decode_torch(
                torch.from_numpy(y), self.s.conf_thres, self.s.iou_thres, self.s.max_det
            )
            self.post_counts.append((float(np.mean(cand)), float(np.mean([len(d[0]) for d in dets]))))
        else:
            s, stats = self.s, {}
            meta = (ctx["scales"], ctx["pads"], ctx["orig_hw"])
            _, counts = self.head.decode(y, *meta, s.conf_thres, s.iou_thres, s.max_det, stats)
            self.post_counts.append((float(stats["candidates"].mean()), float(counts.mean())))

    def context(self, index: int) -> dict:
        """Batch `index` through every step before inference: the model input is ctx["x"]."""
        ctx = {"index": index, "slot": 0}
        for name, step in self.steps:
            if name == "infer":
                break
            step(ctx)
        return ctx

    def input_batch(self, index: int) -> torch.Tensor:
        """Batch `index` as the model receives it (every step before inference), on the device."""
        return self.context(index)["x"]

    def finish(self, ctx: dict) -> None:
        """Every step after inference (post-processing, copies back) on ctx["y"]."""
        names = self.stage_names
        for _, step in self.steps[names.index("infer") + 1 :]:
            step(ctx)

    def checked_output(self, ctx: dict) -> np.ndarray:
        """What the NaN/Inf check looks at: the raw outputs on the host, or the device results."""
        if ctx.get("out") is not None:
            return ctx["out"]
        return np.concatenate([np.asarray(r, np.float64).ravel() for r in ctx["result"]])


def _staged_window(pipe: VisionPipeline, s: RunSettings, progress: Progress | None):
    times: dict[str, list[float]] = {k: [] for k in pipe.stage_names}
    i = 0
    t_window = time.perf_counter()
    while True:
        ctx = {"index": i, "slot": 0}
        marks = [time.perf_counter()]
        for _, step in pipe.steps:
            step(ctx)
            device_sync(s.device)
            marks.append(time.perf_counter())
        i += 1
        if i <= s.warmup:
            t_window = marks[-1]
            continue
        for k, a, b in zip(pipe.stage_names, marks, marks[1:], strict=False):
            times[k].append(b - a)
        n = i - s.warmup
        if progress:
            progress("staged", marks[-1] - t_window, n)
        if window_closed(t_window, n, s.min_duration, s.min_iters):
            return times, marks[-1] - t_window, pipe.checked_output(ctx)


def _pipelined_window(
    pipe: VisionPipeline, s: RunSettings, progress: Progress | None, meter: Meter, uploads: Uploads | None = None
):
    """End to end, overlapped: the host step of batch i+1 runs in a worker thread, and on a GPU its
    upload runs on a copy stream (harness/vision/uploads.py), both while batch i is pre-processed,
    inferred and post-processed; per-batch latency and the window.

    Per batch: wait for its upload, launch its device steps (pre, infer, device post; the slot's
    device buffer is released after the step that consumed it), issue the next batch's upload,
    then the blocking steps (d2h and host post). The energy meter starts as the window opens and
    stops as it closes: energy and throughput come from the same window.
    """
    # On a CPU device, inference already uses every core: a full Numba pool in the worker would
    # oversubscribe them (measured on 2 cores: 61 vs 82 samples/s for MobileNetV3 batch 4).
    pre_threads = pre_threads_for(s.device)
    up = uploads or Uploads(s.device)
    host_step, upload = pipe.steps[0][1], pipe.steps[1][1]
    names = list(pipe.stage_names)
    launch, finish = pipe.steps[2 : names.index("d2h")], pipe.steps[names.index("d2h") :]
    consumed = "pre" if pipe.device_pre else None  # the step after which the slot's device buffer is free

    def host_job(index: int) -> dict:
        numba.set_num_threads(pre_threads)  # thread-local: affects only this worker
        ctx = {"index": index, "slot": index % 2, "t_start": time.perf_counter()}
        up.host_wait(ctx["slot"])  # the slot's previous upload has read its pinned buffer
        host_step(ctx)
        return ctx

    lat: list[float] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        ctx = pool.submit(host_job, 0).result()
        up.issue(ctx["slot"], lambda c=ctx: upload(c))
        fut = pool.submit(host_job, 1)
        i = 0
        if s.warmup == 0:
            meter.start()
        t_window = time.perf_counter()
        while True:
            up.wait(ctx["slot"])
            for name, step in launch:
                step(ctx)
                if name == consumed:
                    up.release(ctx["slot"])
            nxt = fut.result()
            up.issue(nxt["slot"], lambda c=nxt: upload(c))  # overlaps the work just launched
            fut = pool.submit(host_job, i + 2)
            for _, step in finish:
                step(ctx)
            stream_sync(s.device)  # this batch's work, not the upload in flight
            t_end = time.perf_counter()
            i += 1
            if i <= s.warmup:
                if i == s.warmup:
                    meter.start()
                t_window = time.perf_counter()
            else:
                lat.append(t_end - ctx["t_start"])
                if progress:
                    progress("end-to-end", t_end - t_window, len(lat))
                if window_closed(t_window, len(lat), s.min_duration, s.min_iters):
                    window = t_end - t_window
                    reading = meter.stop()
                    fut.result()  # let the batches in flight finish before the buffers go away
                    device_sync(s.device)
                    return lat, window, pipe.checked_output(ctx), reading
            ctx = nxt


def prepare_backend(lm: LoadedModel, pipe: VisionPipeline, s: RunSettings, example: torch.Tensor) -> Prepared:
    """The backend's prepared model for this run, made once per (backend, precision, compile mode,
    layout, provider options, batch size): a compiled mode chosen, a CUDA graph captured or an
    engine built at one batch size is not reused at another.

    `example` is batch 0 as the model receives it (on the device)."""
    key = (s.backend, s.precision, s.compile_mode, pipe.memory_format, tuple(sorted(s.ort_options.items())), pipe.bs)
    if lm.onnx is not None:  # prepared at load, for every batch size
        key = next(k for k in lm.prepared if k[0] == ONNX_FILE)
    if key not in lm.prepared:
        backend = BACKENDS[s.backend]
        calibration = (  # copies: on the CPU a batch is a view of the pipeline's reused host buffer
            [example.float().clone(), *(pipe.input_batch(i).float().clone() for i in range(1, 4))]
            if s.precision == "int8"
            else []
        )
        weights = lm.weights.get("sha256", f"seed{lm.weights.get('seed')}")[:16]
        name = lm.preset.name.replace(":", "-")  # timm:resnet18 -> a file name everywhere
        ctx = PrepareContext(
            f"{name}-{weights}", s.cache_dir, calibration, s.compile_mode, pipe.memory_format, s.ort_options
        )
        try:
            lm.prepared[key] = backend.prepare(copy.deepcopy(lm.model), example.float(), s.precision, ctx)
        except BackendUnavailable as e:
            raise UserError(str(e)) from None
    return lm.prepared[key]


def prepare_checked(lm: LoadedModel, pipe: VisionPipeline, s: RunSettings) -> tuple[Prepared, dict]:
    """Prepare the backend on batch 0 and check its output on that batch against the reference, a
    second, independent execution (`lm.model`). Where there is none (an ONNX file with no second
    session; torch eager fp32 in the reference's own layout, which is the reference execution
    itself), the agreement records "not checked", `passed` None: never a pass."""
    x0 = pipe.input_batch(0)
    prepared = prepare_backend(lm, pipe, s, x0)
    pipe.run_model = prepared.run
    out0 = prepared.run(x0).float().cpu().numpy()
    why = lm.reference if lm.model is None else None
    if lm.onnx is None and s.backend == "torch" and s.precision == "fp32" and pipe.memory_format == "contiguous":
        why = "the run is the reference execution itself (torch eager fp32, contiguous): nothing independent"
    if why is not None:
        return prepared, not_checked(why, out0)
    with torch.inference_mode():
        ref = lm.model(x0.float()).float().cpu().numpy()
    return prepared, agreement(out0, ref, lm.tolerance or s.precision, lm.preset.task, pipe.head, lm.reference)


def pre_threads_for(device: torch.device) -> int:
    """Numba threads for overlapped pre-processing: few beside CPU inference, all beside a GPU."""
    if device.type == "cpu":
        return max(1, numba.config.NUMBA_NUM_THREADS // 8)
    return numba.config.NUMBA_NUM_THREADS


def measure_point(
    lm: LoadedModel,
    batch_size: int,
    source: ImageSource,
    s: RunSettings,
    progress: Progress | None = None,
    preprocess: str = "numba",
    meter: Meter | None = None,
    before_windows=None,
) -> Point:
    """Measure one model at one batch size: first call, staged window, end-to-end window.

    `before_windows`, if given, is called once the model is ready, right before the timed windows
    (many devices: a barrier, so that every rank measures at the same time)."""
    p = lm.preset
    pipe = VisionPipeline(lm, batch_size, source, s, preprocess)
    prepared, agree = prepare_checked(lm, pipe, s)
    t0 = time.perf_counter()
    try:
        ctx = {"index": 0, "slot": 0}
        for _, step in pipe.steps:
            step(ctx)
        device_sync(s.device)
        first = pipe.checked_output(ctx)
    except RuntimeError as e:
        if is_oom(e):  # the caller records the point as out of memory and goes on
            raise
        msg = first_line(e)
        if "not implemented for" in msg or "Unsupported" in msg:
            raise UserError(f"{p.name} cannot run at {s.precision} on {s.device}: {msg}") from None
        raise
    first_call_s = time.perf_counter() - t0
    if before_windows is not None:
        before_windows()
    checked = [first]
    times, staged_window, last_staged = _staged_window(pipe, s, progress)
    checked.append(last_staged)
    pipe.post_counts.clear()
    meter = meter or Meter()
    lat, window, last_e2e, reading = _pipelined_window(pipe, s, progress, meter)
    checked.append(last_e2e)

    nan_or_inf = any(not np.isfinite(a).all() for a in checked)
    output_check: dict = {"checked_batches": len(checked), "nan_or_inf": nan_or_inf}
    if p.task == "detect" and pipe.post_counts:
        cand, kept = np.mean(pipe.post_counts, axis=0)
        output_check["candidates_per_image"] = float(cand)
        output_check["detections_per_image"] = float(kept)

    staged = {k: latency_stats(v) for k, v in times.items()}
    e2e = latency_stats(lat)
    samples = len(lat) * batch_size
    throughput = samples / window
    flags = []
    if e2e.high_cov:
        flags.append("high_cov_e2e")
    if staged["infer"].high_cov:
        flags.append("high_cov_infer")
    if nan_or_inf:
        flags.append("nan_or_inf_outputs")
    return Point(
        **point_fields(lm, s, batch_size, prepared, agree, throughput, reading, flags),
        preprocess=preprocess + ("-cuda" if pipe.device_pre else ""),
        first_call_s=first_call_s,
        warmup_iters=s.warmup,
        staged=staged,
        staged_window_s=staged_window,
        e2e=e2e,
        window_s=window,
        iterations=len(lat),
        samples=samples,
        infer_tflops=lm.flops_per_sample * batch_size / (staged["infer"].mean_ms / 1e3) / 1e12,
        input_source=source.description,
        pre_threads_overlapped=pre_threads_for(s.device),
        output_check=output_check,
    )


def point_fields(
    lm: LoadedModel,
    s: RunSettings,
    batch_size: int,
    prepared: Prepared,
    agree: dict,
    throughput: float,
    reading,
    flags: list[str],
) -> dict:
    """The Point fields every vision measurement fills alike: model, device, backend, agreement,
    throughput, utilisation and energy (over the measured window), and the common flags."""
    p = lm.preset
    flags = list(flags)
    if agree["passed"] is False:
        flags.append("accuracy_check_failed")
    elif agree["passed"] is None:
        flags.append("accuracy_not_checked")
    flags += reading.flags()
    return dict(
        model=p.name,
        task=p.task,
        industry=p.industry,
        arch=p.arch,
        input_hw=list(p.input_hw),
        num_classes=p.num_classes,
        weights=lm.weights,
        device=str(s.device),
        device_name=device_name(s.device),
        backend=s.backend,
        precision=s.precision,
        compile_s=prepared.compile_s,
        backend_info=prepared.info,
        agreement=agree,
        memory_format=memory_format(lm, s),
        batch_size=batch_size,
        params=lm.params,
        flops_per_sample=float(lm.flops_per_sample),
        load_s=lm.load_s,
        throughput_sps=throughput,
        flags=flags,
        **point_metrics(s.device, s.precision, lm.flops_per_sample, throughput, reading),
    )


def measure_onnx(
    om: OnnxModel,
    input_shapes: list[str],
    input_dtype: str,
    s: RunSettings,
    progress: Progress | None = None,
    meter: Meter | None = None,
    batch: int | None = None,
) -> Point:
    """A user's ONNX model through ONNX Runtime (or OpenVINO: `s.backend`) on seeded random inputs:
    inference only, timed with the same window rules and energy meter as the presets; FLOPs and the precision (so
    the MFU's peak) from the graph, not from the inputs' dtype (`onnx_model.graph_precision`; how it was found:
    `backend_info["precision_source"]`). `batch` (a -b value) sets axis 0 of every input; None: the shapes of
    `input_shapes` or the model."""
    from harness.vision import onnx_model as ox  # onnx loads in seconds: ONNX-file runs only

    t0 = time.perf_counter()
    path = om.path
    shapes = ox.parse_input_shapes(om, input_shapes, batch)
    feeds = ox.random_inputs(shapes, input_dtype, s.seed)
    engine = "openvino" if s.backend == "openvino" else "onnxruntime"
    sess, _ = ox.session(om, s.device.type, engine)
    load_s = time.perf_counter() - t0
    flops = ox.count_flops(om, shapes)
    batch = next(iter(shapes.values()))[0]
    t0 = time.perf_counter()
    try:
        first = sess.run(None, feeds)
    except Exception as e:  # the file's graph on these inputs: a wrong dtype, shapes it cannot take
        if is_oom(e):
            raise
        msg = first_line(e, 200)
        raise UserError(f"{Path(path).name} fails in {engine} on {input_dtype} inputs {shapes}: {msg}") from None
    first_call_s = time.perf_counter() - t0
    rules = Window(s.warmup, s.min_duration, s.min_iters)
    run = timed_window(lambda _: sess.run(None, feeds), rules, meter or Meter(), progress, "end-to-end", keep=False)
    lat, window, reading, (last,) = run.times, run.seconds, run.reading, run.results
    nan_or_inf = any(not np.isfinite(np.asarray(o, np.float64)).all() for o in (*first, *last))
    stats = latency_stats(lat)
    throughput = len(lat) * batch / window
    precision, precision_source = ox.graph_precision(om, engine, s.device.type)  # not the inputs' dtype
    m = point_metrics(s.device, precision, flops / batch, throughput, reading)
    checks = {"high_cov_e2e": stats.high_cov, "nan_or_inf_outputs": nan_or_inf}
    flags = [f for f, on in checks.items() if on] + reading.flags()
    return Point(
        model=Path(path).name,
        task="custom",
        industry="-",
        arch="ONNX file",
        input_hw=list(next(iter(shapes.values()))),
        num_classes=0,
        weights={"kind": "file", "path": str(Path(path).resolve()), "sha256": sha256_file(Path(path))},
        device=str(s.device),
        device_name=device_name(s.device),
        backend=engine,
        preprocess="none",
        precision=precision,
        batch_size=batch,
        params=ox.weights_of(om),
        flops_per_sample=flops / batch,
        load_s=load_s,
        first_call_s=first_call_s,
        warmup_iters=s.warmup,
        staged={"infer": stats},
        staged_window_s=window,
        e2e=stats,
        window_s=window,
        iterations=len(lat),
        samples=len(lat) * batch,
        throughput_sps=throughput,
        infer_tflops=m["delivered_tflops"],
        **m,
        input_source=f"seeded random {input_dtype} {shapes}, seed {s.seed}",
        pre_threads_overlapped=0,
        output_check={"checked_batches": 2, "nan_or_inf": nan_or_inf},
        flags=flags,
        compile_s=0.0,
        backend_info={
            "engine": engine,
            "providers": sess.get_providers(),
            "inputs": {k: list(v) for k, v in shapes.items()},
            "precision_source": precision_source,
        },
    )
