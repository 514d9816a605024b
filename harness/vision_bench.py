"""The vision benchmark (`modelpower run`, `quick`, `backends PRESET`): a request in, a result file out.

`run_vision` checks the whole request before anything is measured (`plan`), then measures every
point (model x backend/precision x batch size) in one `ResultSession`, so a bad flag fails at once
and an interrupted run keeps the points it finished. What measures a point is chosen once, in
this precedence:
1. ONNX files: the user's model through ONNX Runtime, inference only (`runner.measure_onnx`);
2. `--scenario`: each point an MLPerf LoadGen test (`loadgen.measure_loadgen`);
3. otherwise the staged and end-to-end windows of `runner.measure_point`.
`keep_going` (the `backends` comparison) turns a failing point into a note instead of an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from harness import runner
from harness.energy import Meter
from harness.errors import UserError
from harness.images import ImageSource
from harness.loadgen import LoadgenConfig
from harness.results import Point
from harness.session import Events, LocalSink, ResultSession, Sink, Tick, check_backend, check_writable, use_spec_file
from models import Preset

QUICK_MODELS = ["steel-defect-mobilenetv3", "pcb-defect-yolo", "steel-seg-lraspp"]


@dataclass
class VisionRequest:
    """Everything `modelpower run` was asked; checked by `plan`."""

    models: list[str]  # preset names or .onnx files
    batch_sizes: list[int]
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
    compile_mode: str = "default"
    cache_dir: Path | None = None
    input_shape: list[str] = field(default_factory=list)
    input_dtype: str = "float32"
    loadgen: LoadgenConfig | None = None
    keep_going: bool = False


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


def _check_options(req: VisionRequest, presets: list[Preset], onnx_files: list[Path]) -> None:
    from models.weights import check_weights

    if onnx_files and presets:
        raise UserError("run presets and ONNX files in separate commands")
    if req.preprocess not in runner.PREPROCESS:
        raise UserError(f"unknown --preprocess {req.preprocess!r}: use {', '.join(runner.PREPROCESS)}")
    if req.preprocess == "opencv":
        try:
            import cv2  # noqa: F401
        except ImportError:
            raise UserError("--preprocess opencv needs OpenCV: pip install opencv-python-headless") from None
    if req.warmup < 0 or req.min_iters < 1 or req.min_duration < 0:
        raise UserError("need --warmup >= 0, --min-iters >= 1 and --min-duration >= 0")
    if req.weights is not None and (len(presets) != 1 or onnx_files):
        raise UserError("--weights applies to one model; name exactly one")
    if req.weights is not None:
        check_weights(presets[0], req.weights)
    if req.assume_watts is not None and not req.assume_watts > 0:
        raise UserError(f"--assume-watts must be a positive number of watts, got {req.assume_watts}")
    use_spec_file(req.spec)
    if req.loadgen is not None:
        from harness.loadgen import import_loadgen

        if onnx_files:
            raise UserError("--scenario runs presets; ONNX files run without LoadGen")
        import_loadgen()
        for bs in req.batch_sizes:
            req.loadgen.check(bs)


def _check_onnx(req: VisionRequest, onnx_files: list[Path]) -> None:
    from harness import onnx_model as ox

    for f in onnx_files:  # every bad file is refused before anything runs
        ox.parse_input_shapes(ox.load_onnx(f), req.input_shape)
    if onnx_files and req.input_dtype not in ox.DTYPES:
        raise UserError(f"--input-dtype must be one of {', '.join(ox.DTYPES)}, got {req.input_dtype!r}")


def plan(req: VisionRequest, sink: Sink) -> VisionPlan:
    """Check the whole request (a UserError for the first mistake) and resolve it; nothing is measured."""
    from harness.energy import select_meter
    from harness.images import folder_images, parse_size, synthetic_images
    from models import get_preset

    if not req.batch_sizes:
        raise UserError("no batch size given")
    onnx_files = [Path(n) for n in req.models if n.endswith(".onnx")]
    presets = [get_preset(n) for n in req.models if not n.endswith(".onnx")]
    combos = _combos(req)
    _check_options(req, presets, onnx_files)
    dev, why = sink.device(req.device)
    for b, prec in combos:
        check_backend(b, dev, prec)
    check_writable(req.out_dir)
    _check_onnx(req, onnx_files)
    source = None
    if presets:
        if req.images is not None:
            source = folder_images(req.images)
        else:
            h, w = parse_size(req.image_size)
            source = synthetic_images(req.num_images, h, w, req.seed)
    settings = runner.RunSettings(
        device=dev, precision=req.precision, warmup=req.warmup, min_duration=req.min_duration,
        min_iters=req.min_iters, seed=req.seed, compile_mode=req.compile_mode,
        cache_dir=req.cache_dir or Path.home() / ".cache" / "modelpower",
    )  # fmt: skip
    meter = select_meter(dev.type, dev.index or 0, req.assume_watts)
    return VisionPlan(dev, why, presets, onnx_files, combos, source, settings, meter)


def _config(req: VisionRequest, p: VisionPlan) -> dict:
    """The result's `config`: the request as it was resolved."""
    return {
        "models": req.models, "batch_sizes": req.batch_sizes, "device": str(p.device), "device_choice": p.device_choice,
        "precision": req.precision, "backends": [f"{b}:{q}" for b, q in p.combos], "compile_mode": req.compile_mode,
        "warmup": req.warmup, "min_duration_s": req.min_duration, "min_iters": req.min_iters, "seed": req.seed,
        "input": p.source.description if p.source else None, "cudnn_benchmark": p.device.type == "cuda",
        "weights": str(req.weights) if req.weights else None, "preprocess": req.preprocess,
        "energy_meter": p.meter.name, "assume_watts": req.assume_watts,
        "spec_file": str(req.spec) if req.spec else None,
    }  # fmt: skip


Measure = Callable[[Tick], Point]


def _points(req: VisionRequest, p: VisionPlan, sink: Sink, events: Events) -> Iterator[tuple[str, int, Measure]]:
    """(label, window count, measure) for every point, in order; each preset loads when reached."""
    for f in p.onnx_files:
        s = replace(p.settings, backend="onnxruntime")
        yield f"{f.name} onnxruntime", 1, lambda tick, f=f, s=s: runner.measure_onnx(
            f, req.input_shape, req.input_dtype, s, tick, p.meter)  # fmt: skip
    for preset in p.presets:
        events.note(f"loading {preset.name} ...")
        lm = runner.load_model(preset, p.settings, req.weights)
        for backend, prec in p.combos:
            for bs in req.batch_sizes:
                s = replace(p.settings, backend=backend, precision=prec)
                label = f"{preset.name} {backend} {prec} batch {bs}"
                if req.loadgen is None:
                    yield label, 2, lambda tick, lm=lm, bs=bs, s=s: runner.measure_point(
                        lm, bs, p.source, s, tick, req.preprocess, p.meter, sink.barrier)  # fmt: skip
                else:
                    rank = f"-rank{sink.rank}" if sink.rank is not None else ""  # one LoadGen test per rank
                    log_dir = req.out_dir / f"{sink.path.stem}-loadgen" / f"{preset.name}-{backend}-{prec}-b{bs}{rank}"
                    yield label, 1, lambda tick, lm=lm, bs=bs, s=s, log_dir=log_dir: _loadgen_point(
                        lm, bs, p, s, req, log_dir, sink, tick)  # fmt: skip


def _loadgen_point(lm, bs, p: VisionPlan, s, req: VisionRequest, log_dir: Path, sink: Sink, tick: Tick) -> Point:
    from harness.loadgen import measure_loadgen

    cfg = req.loadgen
    tick(f"LoadGen {cfg.scenario}: calibrating, then at least {cfg.duration_s:g} s")
    return measure_loadgen(lm, bs, p.source, s, cfg, log_dir, req.preprocess, p.meter, sink.barrier)


def run_vision(req: VisionRequest, events: Events | None = None, sink: Sink | None = None) -> ResultSession:
    """Check `req`, then measure every point into one result file; returns the finished session
    (`session.interrupted`: Ctrl-C stopped it, the finished points are in the file)."""
    events = events or Events()
    sink = sink or LocalSink(req.out_dir)
    p = plan(req, sink)
    events.note(f"device: {p.device_choice}")
    if p.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    p.meter.idle()
    with ResultSession(_config(req, p), sink) as session:
        for label, windows, measure in _points(req, p, sink, events):
            with events.track(label, windows, "batches") as tick:
                try:
                    point = measure(tick)
                except Exception as e:
                    if not req.keep_going:
                        raise
                    msg = f"{label} failed: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}"
                    session.note(msg)
                    events.note(f"warning: {msg}")
                    continue
            session.add(point)
    return session
