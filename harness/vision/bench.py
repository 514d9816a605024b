"""The vision benchmark (`modelpower run`, `quick`, `backends PRESET`): a request in, a result file out.

`run_vision` checks the whole request before anything is measured (`plan`), then measures every
point (model x backend/precision x batch size) in one `ResultSession`, so a bad flag fails at once
and an interrupted run keeps the points it finished. What measures a point is chosen once, in
this precedence:
1. ONNX files: with `--task`, the user's model in our pipeline (frames -> our pre-processing ->
   ONNX Runtime -> our post-processing, `runner.load_onnx_model` + `measure_point`); without it,
   inference only on seeded random inputs (`runner.measure_onnx`), one point per `-b` value;
2. `--scenario`: each point an MLPerf LoadGen test (`loadgen.measure_loadgen`);
3. otherwise the staged and end-to-end windows of `runner.measure_point`.
`keep_going` (the `backends` comparison) turns a failing point into a note instead of an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from harness.backends import check_backend
from harness.errors import UserError, first_line
from harness.inputs import check_number, check_writable
from harness.machine.specs import use_spec_file
from harness.measure.energy import Meter
from harness.measure.memory import check_fits, fits, is_oom
from harness.measure.window import MAX_WINDOW_S
from harness.results.schema import Point
from harness.results.session import Events, LocalSink, ResultSession, Sink, Tick
from harness.vision import runner
from harness.vision.images import ImageSource
from harness.vision.loadgen import LoadgenConfig
from models import Preset

QUICK_MODELS = ["steel-defect-mobilenetv3", "pcb-defect-yolo", "steel-seg-lraspp"]


@dataclass
class VisionRequest:
    """Everything `modelpower run` was asked; checked by `plan`."""

    models: list[str]  # preset names, timm:NAME / torchvision:NAME, or .onnx files
    batch_sizes: list[int] | None  # None: 1 (an ONNX file: its fixed batch, or --input-shape's)
    device: str = "auto"
    precision: str = "fp32"
    backends: list[str] = field(default_factory=lambda: ["torch"])
    combos: list[tuple[str, str]] | None = None  # (backend, precision) pairs; None: backends x precision
    warmup: int = 2
    min_duration: float = 5.0
    min_iters: int = 10
    out_dir: Path = Path("results")
    weights: Path | None = None
    images: Path | None = None
    image_size: str = "1920x1080"
    num_images: int = 16
    seed: int = 0
    preprocess: str = "numba"
    assume_watts: float | None = None
    spec: Path | None = None
    compile_mode: str = "auto"
    memory_format: str = "auto"
    ort_options: list[str] = field(default_factory=list)  # KEY=VALUE provider options for ONNX Runtime on a GPU
    cache_dir: Path | None = None
    input_shape: list[str] = field(default_factory=list)
    input_dtype: str = "float32"
    loadgen: LoadgenConfig | None = None
    keep_going: bool = False
    threads: int | None = None  # pin torch's and Numba's CPU threads (None: their defaults)
    profile: str | None = None  # `quick --profile`: recorded in the result
    task: str | None = None  # ONNX files: classify, detect or segment runs them in our pipeline
    input_size: str | None = None  # --task: HxW the model takes (None: read from the model)
    mean: str | None = None  # --task: "m" or "r,g,b" on the 0..255 scale (None: the task's convention)
    std: str | None = None
    letterbox: bool | None = None  # --task: None: detection letterboxes, the others resize
    rgb: bool | None = None  # --task: the model's channel order (None: RGB)
    det_format: str | None = None  # --task detect: raw or yolov8 (None: recognised from the output)


@dataclass
class VisionPlan:
    """A checked request, resolved: the device, what to run, the inputs, the meter."""

    device: torch.device
    device_choice: str
    presets: list[Preset]
    onnx_files: list[Path]
    combos: list[tuple[str, str]]
    source: ImageSource | None
    settings: runner.RunSettings
    meter: Meter
    onnx_models: dict = field(default_factory=dict)  # --task: each ONNX file loaded before the result file opens


# `modelpower quick --profile`: default is a first look; ci is what a regression gate compares run
# to run: threads pinned to the physical cores, the same inputs every time, longer windows with
# more batches (README: "Performance regressions in CI").
PROFILES = {
    "default": {"min_duration": 3.0, "min_iters": 5, "warmup": 2},
    "ci": {"min_duration": 10.0, "min_iters": 30, "warmup": 5, "image_size": "1280x720", "num_images": 4,
           "threads": "physical"},
}  # fmt: skip


def quick_request(profile: str, device: str, out_dir: Path, min_duration: float | None) -> VisionRequest:
    """`modelpower quick`: three presets (classify, detect, segment) at batch 4 under a profile."""
    p = dict(PROFILES[profile])
    if p.pop("threads", None) == "physical":
        from harness.machine.devices import detect_cpu

        p["threads"] = detect_cpu().physical_cores
    if min_duration is not None:
        p["min_duration"] = min_duration
    return VisionRequest(QUICK_MODELS, [4], device, out_dir=out_dir, profile=profile, **p)


def _combos(req: VisionRequest) -> list[tuple[str, str]]:
    from harness.backends import BACKENDS

    if req.combos is not None:
        return req.combos
    if req.precision not in runner.PRECISIONS:
        raise UserError(f"unknown precision {req.precision!r}: use {', '.join(runner.PRECISIONS)}")
    names = [b.strip() for v in req.backends for b in v.split(",") if b.strip()]
    for b in names:
        if b not in BACKENDS:
            raise UserError(
                f"unknown backend {b!r}: use {', '.join(BACKENDS)} (`modelpower backends` says which run here)"
            )
    return [(b, req.precision) for b in dict.fromkeys(names)]


def _check_numbers(req: VisionRequest) -> None:
    check_number("--warmup", req.warmup, 0)
    check_number("--min-iters", req.min_iters, 1)
    check_number("--min-duration", req.min_duration, 0, MAX_WINDOW_S)
    check_number("--num-images", req.num_images, 1)
    check_number("--seed", req.seed, 0, 2**32 - 1)
    if req.threads is not None:
        check_number("threads", req.threads, 1, 4096)
    if req.assume_watts is not None:
        check_number("--assume-watts", req.assume_watts, 0, above=True)


TASK_FLAGS = (("input_size", "--input-size"), ("mean", "--mean"), ("std", "--std"), ("letterbox", "--letterbox"),
              ("rgb", "--rgb/--bgr"), ("det_format", "--det-format"))  # fmt: skip


def _check_applies(req: VisionRequest, presets: list[Preset], onnx_files: list[Path]) -> None:
    """Options that do not apply to what is run are refused, never ignored."""
    default = VisionRequest([], None)
    if onnx_files and presets:
        raise UserError("run presets and ONNX files in separate commands")
    given = lambda name: getattr(req, name) != getattr(default, name)  # noqa: E731
    if presets:
        for name, flag in (("input_shape", "--input-shape"), ("input_dtype", "--input-dtype"), ("task", "--task"),
                           *TASK_FLAGS):  # fmt: skip
            if given(name):
                raise UserError(f"{flag} applies to .onnx files; a preset knows its own input and task")
    if req.task is None:
        for name, flag in TASK_FLAGS:
            if given(name):
                raise UserError(f"{flag} applies to ONNX files run with --task")
    elif req.det_format is not None and req.task != "detect":
        raise UserError("--det-format applies to --task detect")
    if onnx_files:
        named = {b.strip() for v in req.backends for b in v.split(",")}
        if req.combos is None and given("backends") and named - {"onnxruntime"}:
            raise UserError("ONNX files run through onnxruntime only: drop --backend (or use --backend onnxruntime)")
        if given("precision"):
            raise UserError("--precision applies to presets; an ONNX file runs at its own input type")
        if given("weights"):
            raise UserError("--weights applies to presets; an ONNX file holds its weights")
        if req.task is not None:
            for name, flag in (("input_shape", "--input-shape"), ("input_dtype", "--input-dtype")):
                if given(name):
                    raise UserError(
                        f"{flag} describes random inputs; with --task the input is frames (--input-size HxW)"
                    )
        else:
            for name, flag in (("images", "--images"), ("image_size", "--image-size"), ("num_images", "--num-images"),
                               ("preprocess", "--preprocess")):  # fmt: skip
                if given(name):
                    raise UserError(f"{flag} applies to presets and to ONNX files run with --task; without --task "
                                    "an ONNX file runs on seeded random inputs (--input-dtype)")  # fmt: skip
    if given("compile_mode") and not any(b == "torch-compile" for b, _ in _combos(req)):
        raise UserError("--compile-mode applies to --backend torch-compile")
    if given("memory_format") and (onnx_files or not any(b.startswith("torch") for b, _ in _combos(req))):
        raise UserError("--memory-format applies to presets on the torch backends (ONNX Runtime takes NCHW)")
    if req.ort_options and (onnx_files or not any(b.startswith("onnxruntime") for b, _ in _combos(req))):
        raise UserError("--ort-option applies to presets run with --backend onnxruntime or onnxruntime-trt")
    if req.images is not None and (given("image_size") or given("num_images")):
        raise UserError("--image-size and --num-images describe generated frames; --images uses your files")


def parse_ort_options(items: list[str]) -> dict[str, str]:
    """`--ort-option KEY=VALUE` (repeatable) as ONNX Runtime provider options, e.g.
    cudnn_conv_algo_search=EXHAUSTIVE, enable_cuda_graph=1, prefer_nhwc=1."""
    out = {}
    for item in items:
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not value or not re.fullmatch(r"[A-Za-z0-9_]+", key):
            raise UserError(f"--ort-option takes KEY=VALUE (e.g. enable_cuda_graph=1), got {item!r}")
        if key in out:
            raise UserError(f"--ort-option {key} is given twice")
        out[key] = value
    return out


def _check_options(req: VisionRequest, presets: list[Preset], onnx_files: list[Path]) -> None:
    from harness.backends.torch_compile import MODES
    from models.weights import check_weights

    _check_numbers(req)
    _check_applies(req, presets, onnx_files)
    if req.preprocess not in runner.PREPROCESS:
        raise UserError(f"unknown --preprocess {req.preprocess!r}: use {', '.join(runner.PREPROCESS)}")
    if req.compile_mode not in MODES:
        raise UserError(f"unknown --compile-mode {req.compile_mode!r}: use {', '.join(MODES)}")
    parse_ort_options(req.ort_options)
    if req.memory_format not in runner.MEMORY_FORMATS:
        raise UserError(f"unknown --memory-format {req.memory_format!r}: use {', '.join(runner.MEMORY_FORMATS)}")
    if req.preprocess == "opencv":
        try:
            import cv2  # noqa: F401
        except ImportError:
            raise UserError("--preprocess opencv needs OpenCV: pip install opencv-python-headless") from None
    if req.weights is not None and len(presets) != 1:
        raise UserError("--weights applies to one model; name exactly one")
    if req.weights is not None:
        check_weights(presets[0], req.weights)
    use_spec_file(req.spec)
    if req.loadgen is not None:
        from harness.vision.loadgen import import_loadgen

        if onnx_files:
            raise UserError("--scenario runs presets; ONNX files run without LoadGen")
        import_loadgen()
        for bs in req.batch_sizes or [1]:
            req.loadgen.check(bs)


def task_options(req: VisionRequest):
    """The request's `--task` options for an ONNX file, parsed (a UserError for a bad value)."""
    from harness.vision.onnx_model import TaskOptions

    hw = None
    if req.input_size is not None:
        import re

        if not re.fullmatch(r"[0-9]{1,6}x[0-9]{1,6}", req.input_size.lower()):
            raise UserError(f"--input-size must look like 640x640 (height x width), got {req.input_size!r}")
        h, w = (int(v) for v in req.input_size.lower().split("x"))
        if not (1 <= h <= 16384 and 1 <= w <= 16384):
            raise UserError(f"--input-size must be 1..16384 on each side, got {req.input_size!r}")
        hw = (h, w)
    return TaskOptions(req.task, hw, _channels("--mean", req.mean), _channels("--std", req.std, positive=True),
                       req.letterbox, True if req.rgb is None else req.rgb, req.det_format)  # fmt: skip


def _channels(flag: str, value: str | None, positive: bool = False) -> tuple[float, float, float] | None:
    """'127.5' or '123.7,116.3,103.5' (0..255 scale) -> three finite floats."""
    if value is None:
        return None
    try:
        parts = [float(v) for v in value.split(",")]
    except ValueError:
        raise UserError(f"{flag} must be one number or three (R,G,B on the 0..255 scale), got {value!r}") from None
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or not all(math.isfinite(v) for v in parts):
        raise UserError(f"{flag} must be one number or three (R,G,B on the 0..255 scale), got {value!r}")
    if positive and min(parts) < 1e-3:
        raise UserError(f"{flag} must be at least 0.001 (0..255 scale), got {value!r}")
    if not positive and max(abs(v) for v in parts) > 1e4:
        raise UserError(f"{flag} must be within -10000..10000 (0..255 scale), got {value!r}")
    return parts[0], parts[1], parts[2]


def onnx_batches(om, req: VisionRequest) -> list[int | None]:
    """The batch sizes an ONNX file runs at: -b (checked against a fixed batch axis), or None
    (its fixed batch, or --input-shape's first axis)."""
    from harness.vision import onnx_model as ox

    if req.batch_sizes is None:
        return [None]
    fixed = ox.fixed_batch(om)
    for bs in req.batch_sizes:
        if fixed is not None and bs != fixed:
            raise UserError(f"{om.path.name} has a fixed batch axis of {fixed}: -b {bs} does not fit "
                            "(export the model with a dynamic batch axis to sweep batch sizes)")  # fmt: skip
    return list(req.batch_sizes)


def _check_onnx(req: VisionRequest, onnx_files: list[Path]) -> None:
    import numpy as np

    from harness.vision import onnx_model as ox

    if onnx_files and req.input_dtype not in ox.DTYPES:
        raise UserError(f"--input-dtype must be one of {', '.join(ox.DTYPES)}, got {req.input_dtype!r}")
    opts = task_options(req) if req.task is not None else None
    for f in onnx_files:  # every bad file is refused before anything runs
        om = ox.load_onnx(f)
        batches = onnx_batches(om, req)
        if opts is not None:
            ox.task_preset(om, opts)
            continue
        for bs in batches:
            shapes = ox.parse_input_shapes(om, req.input_shape, bs)
            nbytes = sum(math.prod(s) for s in shapes.values()) * np.dtype(ox.DTYPES[req.input_dtype]).itemsize
            check_fits(f"the inputs of {f.name} ({shapes})", nbytes, 0, torch.device("cpu"))


def validate(req: VisionRequest) -> tuple[list[Preset], list[Path], list[tuple[str, str]]]:
    """Every check that does not need the device: (presets, ONNX files, backend x precision pairs).
    The torchrun launcher runs it before starting any worker."""
    from models import get_preset

    if req.batch_sizes is not None and not req.batch_sizes:
        raise UserError("no batch size given")
    onnx_files = [Path(n) for n in req.models if n.endswith(".onnx")]
    presets = [get_preset(n) for n in req.models if not n.endswith(".onnx")]
    combos = _combos(req)
    _check_options(req, presets, onnx_files)
    check_writable(req.out_dir)
    if any(b.startswith("onnxruntime") for b, _ in combos):
        check_writable(req.cache_dir or runner.RunSettings.cache_dir, "the ONNX cache")
    _check_onnx(req, onnx_files)
    return presets, onnx_files, combos


def _source(req: VisionRequest, device: torch.device) -> ImageSource:
    """The frames batches cycle through; generated frames are refused if they cannot fit."""
    from harness.vision.images import folder_images, parse_size, synthetic_images

    if req.images is not None:
        return folder_images(req.images)
    h, w = parse_size(req.image_size)
    frames = req.num_images * h * w * 3  # uint8 BGR; pinned again on a GPU
    check_fits(f"{req.num_images} generated {w}x{h} frames", frames * (2 if device.type == "cuda" else 1), 0, device)
    return synthetic_images(req.num_images, h, w, req.seed)


def plan(req: VisionRequest, sink: Sink) -> VisionPlan:
    """Check the whole request (a UserError for the first mistake) and resolve it; nothing is measured."""
    from harness.measure.energy import select_meter

    presets, onnx_files, combos = validate(req)
    dev, why = sink.device(req.device)
    if req.spec is not None and dev.type == "cpu":
        raise UserError("--spec rows are GPU nameplates; on the CPU the nameplate is computed (`modelpower devices`)")
    if req.ort_options and dev.type == "cpu":
        raise UserError("--ort-option sets ONNX Runtime's CUDA/TensorRT provider: it applies on a GPU (--device cuda)")
    for b, prec in combos:
        check_backend(b, dev, prec)
    source = _source(req, dev) if presets or req.task else None
    settings = runner.RunSettings(
        device=dev, precision=req.precision, warmup=req.warmup, min_duration=req.min_duration,
        min_iters=req.min_iters, seed=req.seed, compile_mode=req.compile_mode,
        cache_dir=req.cache_dir or runner.RunSettings.cache_dir, memory_format=req.memory_format,
        ort_options=parse_ort_options(req.ort_options),
    )  # fmt: skip
    meter = select_meter(dev.type, dev.index or 0, req.assume_watts)
    return VisionPlan(dev, why, presets, onnx_files, combos, source, settings, meter)


def _config(req: VisionRequest, p: VisionPlan) -> dict:
    """The result's `config`: the request as it was resolved."""
    return {
        "models": req.models, "batch_sizes": req.batch_sizes or ([1] if p.presets else None), "device": str(p.device),
        "device_choice": p.device_choice,
        "precision": req.precision, "compile_mode": req.compile_mode, "memory_format": req.memory_format,
        "ort_options": parse_ort_options(req.ort_options),
        "backends": [f"{b}:{q}" for b, q in p.combos] if p.presets else ["onnxruntime"], "task": req.task,
        "warmup": req.warmup, "min_duration_s": req.min_duration, "min_iters": req.min_iters, "seed": req.seed,
        "input": p.source.description if p.source else None, "cudnn_benchmark": p.device.type == "cuda",
        "weights": str(req.weights) if req.weights else None, "preprocess": req.preprocess if p.source else "none",
        "energy_meter": p.meter.name, "assume_watts": req.assume_watts, "profile": req.profile,
        "threads": req.threads,
        "spec_file": str(req.spec) if req.spec else None,
    }  # fmt: skip


@dataclass
class PointJob:
    """One point to measure: what it is, how many windows it has, its memory estimate, how to run it."""

    label: str
    fields: dict  # model, backend, precision, batch_size: what a failure record names
    windows: int
    need: tuple[float, float]  # estimated (host, device) bytes beyond what is already allocated
    measure: Callable[[Tick], Point]


def _batch_bytes(preset: Preset, act_per_sample: int, bs: int, p: VisionPlan) -> tuple[float, float]:
    """(host, device) bytes one batch allocates: double-buffered input batches, uploaded frames on a
    GPU, and about 3 of the largest activation alive at once (an op's input, output, a skip)."""
    h, w = preset.input_hw
    batch = bs * 3 * h * w * 4
    frame = max(im.nbytes for im in p.source.images)
    on_gpu = p.device.type == "cuda"
    host = 2 * batch  # double-buffered input batches (the CUDA data path uses fewer)
    device = batch + 3 * act_per_sample * bs + (2 * bs * frame if on_gpu else 0)
    return host, device


def _jobs(req: VisionRequest, p: VisionPlan, sink: Sink, events: Events) -> Iterator[PointJob]:
    """Every point in order; each preset loads when its first point is reached."""
    from harness.measure.memory import activation_bytes_per_sample
    from harness.vision import onnx_model as ox

    for f in p.onnx_files:
        if req.task is not None:
            yield from _onnx_task_jobs(f, req, p, sink)
            continue
        for bs in onnx_batches(ox.load_onnx(f), req):
            s = replace(p.settings, backend="onnxruntime")
            label = f"{f.name} onnxruntime" + (f" batch {bs}" if bs is not None else "")
            fields = {"model": f.name, "backend": "onnxruntime", "precision": "fp32", "batch_size": bs}
            yield PointJob(label, fields, 1, (0, 0), lambda tick, f=f, s=s, bs=bs: runner.measure_onnx(
                f, req.input_shape, req.input_dtype, s, tick, p.meter, bs))  # fmt: skip
    for preset in p.presets:
        events.note(f"loading {preset.name} ...")
        lm = runner.load_model(preset, p.settings, req.weights)
        act = activation_bytes_per_sample(preset.builder, preset.num_classes, preset.input_hw)
        for backend, prec in p.combos:
            for bs in req.batch_sizes or [1]:
                s = replace(p.settings, backend=backend, precision=prec)
                label = f"{preset.name} {backend} {prec} batch {bs}"
                fields = {"model": preset.name, "backend": backend, "precision": prec, "batch_size": bs}
                need = _batch_bytes(preset, act, bs, p)
                if req.loadgen is None:
                    yield PointJob(label, fields, 2, need, lambda tick, lm=lm, bs=bs, s=s: runner.measure_point(
                        lm, bs, p.source, s, tick, req.preprocess, p.meter, sink.barrier))  # fmt: skip
                    continue
                rank = f"-rank{sink.rank}" if sink.rank is not None else ""  # one LoadGen test per rank
                log_dir = req.out_dir / f"{sink.path.stem}-loadgen" / f"{preset.name}-{backend}-{prec}-b{bs}{rank}"
                samples = req.loadgen.sample_count * 3 * preset.input_hw[0] * preset.input_hw[1] * 4
                need = (need[0], need[1] + samples)
                yield PointJob(label, fields, 1, need, lambda tick, lm=lm, bs=bs, s=s, log_dir=log_dir: _loadgen_point(
                    lm, bs, p, s, req, log_dir, sink, tick))  # fmt: skip


def _onnx_task_jobs(f: Path, req: VisionRequest, p: VisionPlan, sink: Sink) -> Iterator[PointJob]:
    """An ONNX file in our pipeline (--task): loaded once, one end-to-end point per batch size."""
    from harness.vision import onnx_model as ox

    lm = p.onnx_models.get(f) or runner.load_onnx_model(f, task_options(req), p.settings)
    batches = [bs or ox.fixed_batch(lm.onnx) or 1 for bs in onnx_batches(lm.onnx, req)]
    (precision,) = {key[1] for key in lm.prepared}
    for bs in batches:
        s = replace(p.settings, backend="onnxruntime", precision=precision)
        label = f"{f.name} {req.task} onnxruntime {precision} batch {bs}"
        fields = {"model": f.name, "backend": "onnxruntime", "precision": precision, "batch_size": bs}
        need = _batch_bytes(lm.preset, 0, bs, p)
        yield PointJob(label, fields, 2, need, lambda tick, bs=bs, s=s: runner.measure_point(
            lm, bs, p.source, s, tick, req.preprocess, p.meter, sink.barrier))  # fmt: skip


def _loadgen_point(lm, bs, p: VisionPlan, s, req: VisionRequest, log_dir: Path, sink: Sink, tick: Tick) -> Point:
    from harness.vision.loadgen import measure_loadgen

    cfg = req.loadgen
    tick(f"LoadGen {cfg.scenario}: calibrating, then at least {cfg.duration_s:g} s")
    return measure_loadgen(lm, bs, p.source, s, cfg, log_dir, req.preprocess, p.meter, sink.barrier)


def run_vision(req: VisionRequest, events: Events | None = None, sink: Sink | None = None) -> ResultSession:
    """Check `req`, then measure every point into one result file; returns the finished session
    (`session.interrupted`: Ctrl-C stopped it, the finished points are in the file)."""
    events = events or Events()
    sink = sink or LocalSink(req.out_dir)
    p = plan(req, sink)
    if req.task is not None:  # a file ONNX Runtime cannot load is one line, with no result file left behind
        for f in p.onnx_files:
            p.onnx_models[f] = runner.load_onnx_model(f, task_options(req), p.settings)
    events.note(f"device: {p.device_choice}")
    if p.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if req.threads is not None:
        import numba

        torch.set_num_threads(req.threads)
        numba.set_num_threads(min(req.threads, numba.config.NUMBA_NUM_THREADS))
    p.meter.idle()
    with ResultSession(_config(req, p), sink) as session:
        for job in _jobs(req, p, sink, events):
            single = sink.rank is None  # under torchrun every rank must measure every point, or fail
            too_big = fits(*job.need, p.device) if single else None
            if too_big:
                _failed(session, events, job, "oom", f"not run: {too_big} (estimated)")
                continue
            with events.track(job.label, job.windows, "batches") as tick:
                try:
                    point = job.measure(tick)
                except Exception as e:
                    if single and is_oom(e):
                        _failed(session, events, job, "oom", f"out of memory: {first_line(e)}")
                        continue
                    if not req.keep_going:
                        raise
                    _failed(session, events, job, "error", first_line(e))
                    continue
            session.add(point)
    return session


def _failed(session: ResultSession, events: Events, job: PointJob, kind: str, detail: str) -> None:
    """A point that could not be measured: recorded in the result, said to the user; the run goes on."""
    session.fail({"label": job.label, **job.fields, "kind": kind, "detail": detail})
    events.note(f"warning: {job.label}: {detail}")
