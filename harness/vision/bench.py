"""The vision benchmark (`modelpower run`, `quick`, `backends PRESET`): a request in, a result file out.

`run_vision` checks the whole request before anything is measured (`plan`: each part of the
request checks itself, harness/vision/request.py, and each model source is resolved once: presets
looked up, ONNX files parsed), then measures every point (model x backend/precision x batch size)
in one `ResultSession`, so a bad flag fails at once and an interrupted run keeps the points it
finished. What measures a point is chosen once, in this precedence:
1. ONNX files: with `--task`, the user's model in our pipeline (frames -> our pre-processing ->
   ONNX Runtime -> our post-processing, `runner.load_onnx_model` + `measure_point`); without it,
   inference only on seeded random inputs (`runner.measure_onnx`), one point per `-b` value;
2. `--scenario`: each point an MLPerf LoadGen test (`loadgen.measure_loadgen`);
3. otherwise the staged and end-to-end windows of `runner.measure_point`.
`keep_going` (the `backends` comparison) turns a failing point into a note instead of an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numba
import torch

from harness.backends import check_backend
from harness.errors import UserError, first_line
from harness.inputs import check_writable
from harness.machine.devices import detect_cpu
from harness.machine.specs import use_spec_file
from harness.measure.energy import Meter, select_meter
from harness.measure.memory import activation_bytes_per_sample, check_fits, fits, is_oom
from harness.measure.window import Window
from harness.results.schema import Point
from harness.results.session import Events, LocalSink, ResultSession, Sink, Tick
from harness.vision import runner
from harness.vision.images import ImageSource, folder_images, parse_size, synthetic_images
from harness.vision.loadgen import LoadgenConfig, measure_loadgen
from harness.vision.request import Frames, VisionRequest
from models import Preset, get_preset
from models.vision.weights import check_weights

if TYPE_CHECKING:
    from harness.vision.onnx_model import OnnxModel

QUICK_MODELS = ["steel-defect-mobilenetv3", "pcb-defect-yolo", "steel-seg-lraspp"]

# `modelpower quick --profile`: default is a first look; ci is what a regression gate compares run
# to run: threads pinned to the physical cores, the same inputs every time, longer windows with
# more batches (docs/claims-and-reports.md: the CI gate).
PROFILES = {
    "default": {"window": Window(warmup=2, min_duration=3.0, min_iters=5)},
    "ci": {
        "window": Window(warmup=5, min_duration=10.0, min_iters=30),
        "frames": Frames(image_size="1280x720", num_images=4),
        "threads": "physical",
    },
}
QUICK_BATCH = 4
# `modelpower backends PRESET`: every backend x precision that runs here, short windows.
COMPARISON = {"batch": 8, "window": Window(min_duration=3.0, min_iters=5)}


@dataclass
class Sources:
    """The request's models, each resolved once: presets looked up, ONNX files parsed."""

    presets: list[Preset]
    onnx: dict[Path, OnnxModel]  # in the order given


@dataclass
class VisionPlan:
    """A checked request, resolved: the device, what to run, the inputs, the meter."""

    device: torch.device
    device_choice: str
    sources: Sources
    combos: list[tuple[str, str]]
    source: ImageSource | None
    settings: runner.RunSettings
    meter: Meter
    loadgen: LoadgenConfig | None
    task_models: dict = field(default_factory=dict)  # --task: each ONNX file loaded before the result file opens


def quick_request(profile: str, device: str, out_dir: Path, min_duration: float | None) -> VisionRequest:
    """`modelpower quick`: three presets (classify, detect, segment) at batch 4 under a profile."""
    p = dict(PROFILES[profile])
    if p.pop("threads", None) == "physical":
        p["threads"] = detect_cpu().physical_cores
    if min_duration is not None:
        p["window"] = replace(p["window"], min_duration=min_duration)
    return VisionRequest(QUICK_MODELS, [QUICK_BATCH], device, out_dir=out_dir, profile=profile, **p)


def onnx_batches(om: OnnxModel, req: VisionRequest) -> list[int | None]:
    """The batch sizes an ONNX file runs at: -b (checked against a fixed batch axis), or None
    (its fixed batch, or --input-shape's first axis)."""
    from harness.vision import onnx_model as ox  # onnx loads in seconds: ONNX-file runs only

    if req.batch_sizes is None:
        return [None]
    fixed = ox.fixed_batch(om)
    for bs in req.batch_sizes:
        if fixed is not None and bs != fixed:
            raise UserError(
                f"{om.path.name} has a fixed batch axis of {fixed}: -b {bs} does not fit "
                "(export the model with a dynamic batch axis to sweep batch sizes)"
            )
    return list(req.batch_sizes)


def _check_onnx(req: VisionRequest, onnx: dict[Path, OnnxModel]) -> None:
    """Every ONNX file against the request: batch sizes, --task conventions or the random inputs'
    shapes and memory; every bad file is refused before anything runs."""

    from harness.vision import onnx_model as ox  # onnx loads in seconds: ONNX-file runs only

    opts = req.task.options() if req.task.task is not None else None
    for f, om in onnx.items():
        batches = onnx_batches(om, req)
        if opts is not None:
            ox.task_preset(om, opts)
            continue
        for bs in batches:
            shapes = ox.parse_input_shapes(om, list(req.random_inputs.input_shape), bs)
            nbytes = ox.input_bytes(shapes, req.random_inputs.dtype)
            check_fits(f"the inputs of {f.name} ({shapes})", nbytes, 0, torch.device("cpu"))


def validate(req: VisionRequest) -> tuple[Sources, list[tuple[str, str]]]:
    """Every check that does not need the device: (the resolved models, backend x precision pairs).
    The torchrun launcher runs it before starting any worker."""
    from harness.vision import onnx_model as ox  # onnx loads in seconds: ONNX-file runs only

    presets = [get_preset(n) for n in req.models if not n.endswith(".onnx")]
    req.check()
    if req.weights is not None:
        check_weights(presets[0], req.weights)
    use_spec_file(req.spec)
    check_writable(req.out_dir)
    combos = req.backend.pairs
    if any(b.startswith("onnxruntime") or b == "openvino" for b, _ in combos):
        check_writable(req.cache_dir or runner.RunSettings.cache_dir, "the ONNX cache")
    onnx = {Path(n): ox.load_onnx(Path(n)) for n in req.models if n.endswith(".onnx")}
    _check_onnx(req, onnx)
    return Sources(presets, onnx), combos


def _source(req: VisionRequest, device: torch.device) -> ImageSource:
    """The frames batches cycle through; generated frames are refused if they cannot fit."""
    fr = req.frames
    if fr.images is not None:
        return folder_images(fr.images)
    h, w = parse_size(fr.size)
    frames = fr.count * h * w * 3  # uint8 BGR; pinned again on a GPU
    check_fits(f"{fr.count} generated {w}x{h} frames", frames * (2 if device.type == "cuda" else 1), 0, device)
    return synthetic_images(fr.count, h, w, req.seed)


def plan(req: VisionRequest, sink: Sink) -> VisionPlan:
    """Check the whole request (a UserError for the first mistake) and resolve it; nothing is measured."""
    sources, combos = validate(req)
    dev, why = sink.device(req.device)
    if req.spec is not None and dev.type == "cpu":
        raise UserError("--spec rows are GPU nameplates; on the CPU the nameplate is computed (`modelpower devices`)")
    if req.backend.ort_options and dev.type == "cpu":
        raise UserError("--ort-option sets ONNX Runtime's CUDA/TensorRT provider: it applies on a GPU (--device cuda)")
    for b, prec in combos:
        check_backend(b, dev, prec)
    source = _source(req, dev) if sources.presets or req.kind == "onnx-task" else None
    w, bc = req.window, req.backend
    settings = runner.RunSettings(
        device=dev,
        precision=bc.prec,
        warmup=w.warmup,
        min_duration=w.min_duration,
        min_iters=w.min_iters,
        seed=req.seed,
        compile_mode=bc.mode,
        cache_dir=req.cache_dir or runner.RunSettings.cache_dir,
        memory_format=bc.layout,
        ort_options=bc.ort,
    )
    meter = select_meter(dev.type, dev.index or 0, req.assume_watts)
    return VisionPlan(dev, why, sources, combos, source, settings, meter, req.loadgen.config(w))


def _config(req: VisionRequest, p: VisionPlan) -> dict:
    """The result's `config`: the request as it was resolved."""
    presets, w, bc = p.sources.presets, req.window, req.backend
    return {
        "models": req.models,
        "batch_sizes": req.batch_sizes or ([1] if presets else None),
        "device": str(p.device),
        "device_choice": p.device_choice,
        "precision": bc.prec,
        "compile_mode": bc.mode,
        "memory_format": bc.layout,
        "ort_options": bc.ort,
        "backends": [f"{b}:{q}" for b, q in p.combos] if presets else [req.backend.file_engine],
        "task": req.task.task,
        "warmup": w.warmup,
        "min_duration_s": w.min_duration,
        "min_iters": w.min_iters,
        "seed": req.seed,
        "input": p.source.description if p.source else None,
        "cudnn_benchmark": p.device.type == "cuda",
        "weights": str(req.weights) if req.weights else None,
        "preprocess": req.frames.pre if p.source else "none",
        "energy_meter": p.meter.name,
        "assume_watts": req.assume_watts,
        "profile": req.profile,
        "threads": req.threads,
        "spec_file": str(req.spec) if req.spec else None,
    }


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
    pre, inputs = req.frames.pre, req.random_inputs
    for f, om in p.sources.onnx.items():
        if f in p.task_models:
            yield from _onnx_task_jobs(p.task_models[f], req, p, sink)
            continue
        for bs in onnx_batches(om, req):
            engine = req.backend.file_engine
            s = replace(p.settings, backend=engine)
            label = f"{f.name} {engine}" + (f" batch {bs}" if bs is not None else "")
            from harness.vision import onnx_model as ox  # onnx loads in seconds: ONNX-file runs only

            precision = ox.graph_precision(om, engine, p.device.type)[0]  # the graph's, not an assumed fp32
            fields = {"model": f.name, "backend": engine, "precision": precision, "batch_size": bs}
            yield PointJob(
                label,
                fields,
                1,
                (0, 0),
                lambda tick, om=om, s=s, bs=bs: runner.measure_onnx(
                    om, list(inputs.input_shape), inputs.dtype, s, tick, p.meter, bs
                ),
            )
    for preset in p.sources.presets:
        events.note(f"loading {preset.name} ...")
        lm = runner.load_model(preset, p.settings, req.weights)
        act = activation_bytes_per_sample(preset.builder, preset.num_classes, preset.input_hw)
        for backend, prec in p.combos:
            for bs in req.batch_sizes or [1]:
                s = replace(p.settings, backend=backend, precision=prec)
                label = f"{preset.name} {backend} {prec} batch {bs}"
                fields = {"model": preset.name, "backend": backend, "precision": prec, "batch_size": bs}
                need = _batch_bytes(preset, act, bs, p)
                if p.loadgen is None:
                    yield PointJob(
                        label,
                        fields,
                        2,
                        need,
                        lambda tick, lm=lm, bs=bs, s=s: runner.measure_point(
                            lm, bs, p.source, s, tick, pre, p.meter, sink.barrier
                        ),
                    )
                    continue
                rank = f"-rank{sink.rank}" if sink.rank is not None else ""  # one LoadGen test per rank
                log_dir = req.out_dir / f"{sink.path.stem}-loadgen" / f"{preset.name}-{backend}-{prec}-b{bs}{rank}"
                samples = p.loadgen.sample_count * 3 * preset.input_hw[0] * preset.input_hw[1] * 4
                need = (need[0], need[1] + samples)
                yield PointJob(
                    label,
                    fields,
                    1,
                    need,
                    lambda tick, lm=lm, bs=bs, s=s, log_dir=log_dir: _loadgen_point(
                        lm, bs, p, s, req, log_dir, sink, tick
                    ),
                )


def _onnx_task_jobs(lm: runner.LoadedModel, req: VisionRequest, p: VisionPlan, sink: Sink) -> Iterator[PointJob]:
    """An ONNX file in our pipeline (--task), loaded before the result file opened: one end-to-end
    point per batch size."""
    from harness.vision import onnx_model as ox  # onnx loads in seconds: ONNX-file runs only

    f = lm.onnx.path
    batches = [bs or ox.fixed_batch(lm.onnx) or 1 for bs in onnx_batches(lm.onnx, req)]
    (precision,) = {key[1] for key in lm.prepared}
    for bs in batches:
        engine = req.backend.file_engine
        s = replace(p.settings, backend=engine, precision=precision)
        label = f"{f.name} {req.task.task} {engine} {precision} batch {bs}"
        fields = {"model": f.name, "backend": engine, "precision": precision, "batch_size": bs}
        need = _batch_bytes(lm.preset, 0, bs, p)
        yield PointJob(
            label,
            fields,
            2,
            need,
            lambda tick, bs=bs, s=s: runner.measure_point(
                lm, bs, p.source, s, tick, req.frames.pre, p.meter, sink.barrier
            ),
        )


def _loadgen_point(lm, bs, p: VisionPlan, s, req: VisionRequest, log_dir: Path, sink: Sink, tick: Tick) -> Point:
    cfg = p.loadgen
    tick(f"LoadGen {cfg.scenario}: calibrating, then at least {cfg.duration_s:g} s")
    return measure_loadgen(lm, bs, p.source, s, cfg, log_dir, req.frames.pre, p.meter, sink.barrier)


def run_vision(req: VisionRequest, events: Events | None = None, sink: Sink | None = None) -> ResultSession:
    """Check `req`, then measure every point into one result file; returns the finished session
    (`session.interrupted`: Ctrl-C stopped it, the finished points are in the file)."""
    events = events or Events()
    sink = sink or LocalSink(req.out_dir)
    p = plan(req, sink)
    if req.kind == "onnx-task":  # a file ONNX Runtime cannot load is one line, with no result file left behind
        for f, om in p.sources.onnx.items():
            p.task_models[f] = runner.load_onnx_model(om, req.task.options(), p.settings, req.backend.file_engine)
    events.note(f"device: {p.device_choice}")
    if p.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if req.threads is not None:
        torch.set_num_threads(req.threads)
        numba.set_num_threads(min(req.threads, numba.config.NUMBA_NUM_THREADS))
    p.meter.idle()
    with ResultSession(_config(req, p), sink) as session:
        for job in _jobs(req, p, sink, events):
            single = sink.rank is None  # under torchrun every rank must measure every point, or fail
            too_big = fits(*job.need, p.device) if single else None
            if too_big:
                _failed(session, events, job, "skipped", f"would not fit (estimated: {too_big})")
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
