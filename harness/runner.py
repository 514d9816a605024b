"""The timed runner: one vision preset, one batch size, one device -> one result `Point`.

Follows MEASUREMENT.md: load and first call timed apart from the steady state; warm-up excluded;
a window ends when both `min_duration` and `min_iters` are met; the device is synchronized before a
timer is read. Two windows per point:
- staged: each stage (pre, h2d, infer, d2h, post) of a batch timed alone, for the breakdown;
- end to end: the pipeline as it really runs, a worker thread pre-processing batch i+1 while batch
  i is inferred and post-processed; throughput = samples completed in the window / window time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
import torch

from harness.errors import UserError
from harness.flops import preset_flops_per_sample
from harness.images import ImageSource
from harness.results import STAGES, Point
from harness.stats import latency_stats
from kernels import detect_postprocess, letterbox_normalize, seg_argmax, softmax_topk
from models import Preset, build_model
from models.detector import anchor_points

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
Progress = Callable[[str, float, int], None]  # (phase, elapsed_s, iterations)


@dataclass
class RunSettings:
    device: torch.device
    precision: str = "fp32"
    warmup: int = 2
    min_duration: float = 5.0
    min_iters: int = 10
    seed: int = 0
    topk: int = 5
    conf_thres: float = 0.25
    iou_thres: float = 0.45
    max_det: int = 300


@dataclass
class LoadedModel:
    preset: Preset
    model: torch.nn.Module
    weights: dict
    load_s: float
    params: int
    flops_per_sample: int


def load_model(preset: Preset, settings: RunSettings, weights=None) -> LoadedModel:
    """Build (or load) the preset's model and move it to the device and precision, timed."""
    t0 = time.perf_counter()
    model, source = build_model(preset, seed=settings.seed, weights=weights)
    model = model.to(settings.device, DTYPES[settings.precision])
    _sync(settings.device)
    load_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    flops = preset_flops_per_sample(preset.builder, preset.num_classes, preset.input_hw)
    return LoadedModel(preset, model, source, load_s, params, flops)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class VisionPipeline:
    """The five stages of one batch; host buffers (pinned on CUDA) allocated once, double-buffered."""

    def __init__(self, lm: LoadedModel, batch_size: int, source: ImageSource, s: RunSettings):
        self.lm, self.bs, self.source, self.s = lm, batch_size, source, s
        p = lm.preset
        pin = s.device.type == "cuda"
        shape = (batch_size, 3, *p.input_hw)
        self.host = [torch.empty(shape, dtype=torch.float32, pin_memory=pin) for _ in range(2)]
        self.anchors = anchor_points(*p.input_hw) if p.task == "detect" else None
        self.post_counts: list[float] = []

    def pre(self, index: int, slot: int) -> tuple:
        p = self.lm.preset
        imgs = self.source.batch(index, self.bs)
        _, scales, pads = letterbox_normalize(
            imgs, p.input_hw, p.mean, p.std, bgr_to_rgb=self.source.bgr,
            letterbox=p.letterbox, out=self.host[slot].numpy(),
        )  # fmt: skip
        orig_hw = np.array([im.shape[:2] for im in imgs], np.float64)
        return scales, pads, orig_hw

    def h2d(self, slot: int) -> torch.Tensor:
        return self.host[slot].to(self.s.device, DTYPES[self.s.precision], non_blocking=True)

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.lm.model(x)

    def d2h(self, y: torch.Tensor) -> np.ndarray:
        return y.float().cpu().numpy()

    def post(self, y: np.ndarray, meta: tuple) -> None:
        task = self.lm.preset.task
        if task == "classify":
            softmax_topk(y, self.s.topk)
        elif task == "segment":
            seg_argmax(y)
        else:
            scales, pads, orig_hw = meta
            _, counts = detect_postprocess(
                y, self.anchors, scales, pads, orig_hw, self.s.conf_thres, self.s.iou_thres,
                self.s.max_det,
            )  # fmt: skip
            self.post_counts.append(float(counts.mean()))


def _window_done(t0: float, n: int, s: RunSettings) -> bool:
    return n >= s.min_iters and time.perf_counter() - t0 >= s.min_duration


def _staged_window(pipe: VisionPipeline, s: RunSettings, progress: Progress | None):
    times = {k: [] for k in STAGES}
    sync = lambda: _sync(s.device)  # noqa: E731
    last = None
    i = 0
    t_window = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        meta = pipe.pre(i, 0)
        t1 = time.perf_counter()
        x = pipe.h2d(0)
        sync()
        t2 = time.perf_counter()
        y = pipe.infer(x)
        sync()
        t3 = time.perf_counter()
        yh = pipe.d2h(y)
        t4 = time.perf_counter()
        pipe.post(yh, meta)
        t5 = time.perf_counter()
        i += 1
        if i <= s.warmup:
            t_window = t5
            continue
        for k, (a, b) in zip(STAGES, ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)), strict=True):
            times[k].append(b - a)
        last = yh
        n = i - s.warmup
        if progress:
            progress("staged", t5 - t_window, n)
        if _window_done(t_window, n, s):
            return times, t5 - t_window, last


def _pipelined_window(pipe: VisionPipeline, s: RunSettings, progress: Progress | None):
    """End to end with pre-processing of the next batch overlapped; per-batch latency and window."""

    # On a CPU device, inference already uses every core: a full Numba pool in the worker would
    # oversubscribe them (measured on 2 cores: 61 vs 82 samples/s for MobileNetV3 batch 4).
    pre_threads = pre_threads_for(s.device)

    def pre_job(index: int):
        numba.set_num_threads(pre_threads)  # thread-local: affects only this worker
        t = time.perf_counter()
        return t, pipe.pre(index, index % 2)

    lat: list[float] = []
    last = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        fut = pool.submit(pre_job, 0)
        i = 0
        t_window = time.perf_counter()
        while True:
            t_start, meta = fut.result()
            x = pipe.h2d(i % 2)
            fut = pool.submit(pre_job, i + 1)
            yh = pipe.d2h(pipe.infer(x))  # .cpu() waits for the device
            pipe.post(yh, meta)
            t_end = time.perf_counter()
            i += 1
            if i <= s.warmup:
                t_window = t_end
                continue
            lat.append(t_end - t_start)
            last = yh
            if progress:
                progress("end-to-end", t_end - t_window, len(lat))
            if _window_done(t_window, len(lat), s):
                window = t_end - t_window
                fut.result()  # let the batch in flight finish before the buffers go away
                return lat, window, last


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
) -> Point:
    """Measure one model at one batch size: first call, staged window, end-to-end window."""
    p = lm.preset
    pipe = VisionPipeline(lm, batch_size, source, s)
    t0 = time.perf_counter()
    try:
        meta = pipe.pre(0, 0)
        first = pipe.d2h(pipe.infer(pipe.h2d(0)))
        pipe.post(first, meta)
    except RuntimeError as e:
        msg = str(e).splitlines()[0]
        if "not implemented for" in msg or "Unsupported" in msg:
            raise UserError(f"{p.name} cannot run at {s.precision} on {s.device}: {msg}") from None
        if "out of memory" in msg.lower():
            raise UserError(f"{p.name} batch {batch_size} does not fit on {s.device}: {msg}") from None
        raise
    first_call_s = time.perf_counter() - t0
    checked = [first]
    times, staged_window, last_staged = _staged_window(pipe, s, progress)
    checked.append(last_staged)
    pipe.post_counts.clear()
    lat, window, last_e2e = _pipelined_window(pipe, s, progress)
    checked.append(last_e2e)

    nan_or_inf = any(not np.isfinite(a).all() for a in checked)
    output_check: dict = {"checked_batches": len(checked), "nan_or_inf": nan_or_inf}
    if p.task == "detect" and pipe.post_counts:
        output_check["mean_detections_per_image"] = float(np.mean(pipe.post_counts))

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
    device_name = torch.cuda.get_device_name(s.device) if s.device.type == "cuda" else _cpu_name()
    return Point(
        model=p.name, task=p.task, industry=p.industry, arch=p.arch,
        input_hw=list(p.input_hw), num_classes=p.num_classes, weights=lm.weights,
        device=str(s.device), device_name=device_name, backend="torch", precision=s.precision,
        batch_size=batch_size, params=lm.params, flops_per_sample=float(lm.flops_per_sample),
        load_s=lm.load_s, first_call_s=first_call_s, warmup_iters=s.warmup,
        staged=staged, staged_window_s=staged_window,
        e2e=e2e, window_s=window, iterations=len(lat), samples=samples,
        throughput_sps=throughput,
        delivered_tflops=lm.flops_per_sample * throughput / 1e12,
        infer_tflops=lm.flops_per_sample * batch_size / (staged["infer"].mean_ms / 1e3) / 1e12,
        input_source=source.description, pre_threads_overlapped=pre_threads_for(s.device),
        output_check=output_check, flags=flags,
    )  # fmt: skip


def _cpu_name() -> str:
    from harness.devices import detect_cpu

    return detect_cpu().model
