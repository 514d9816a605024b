"""The `modelpower` command line: devices, models, run, quick.

Every user mistake is one line on stderr and exit code 2 (see `harness.errors.UserError`).
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.errors import UserError

if TYPE_CHECKING:
    from harness import distributed
    from harness import loadgen as loadgen_mod

app = typer.Typer(
    name="modelpower",
    help="Benchmark batch inference on this machine: throughput, latency, delivered FLOPS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_WIDTH = None if sys.stdout.isatty() else 160  # logs and pipes get whole tables, not cut ones
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)

QUICK_MODELS = ["steel-defect-mobilenetv3", "pcb-defect-yolo", "steel-seg-lraspp"]


def user_errors(fn):
    """Turn a UserError into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            err.print(f"modelpower: error: {e}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def check_backend(name: str, device, precision: str) -> None:
    """One clear line if a backend cannot run here or not at this precision."""
    from harness.backends import BACKENDS, BackendUnavailable

    try:
        BACKENDS[name].check(device, precision)
    except BackendUnavailable as e:
        raise UserError(str(e)) from None
    if device.type == "cpu" and precision == "fp16":
        raise UserError(f"{name}: fp16 on the CPU is not supported; use fp32, bf16 (torch) or int8 (onnxruntime)")


def write_measurement(out_dir: Path, prefix: str, kind: str, started: str, body: dict) -> Path:
    """A `peak` or `kernels` record: kind, version, times, the measurements and provenance, as JSON."""
    from harness.provenance import now_iso, provenance

    doc = {"kind": kind, "version": 1, "started_at": started, "ended_at": now_iso(), **body, "provenance": provenance()}
    path = out_dir / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    out.print(f"written to {path}", highlight=False)
    return path


def use_spec_file(path: Path) -> None:
    """--spec FILE: the user's rows are tried before the project's table."""
    from harness.specs import add_spec_file

    try:
        add_spec_file(path)
    except ValueError as e:
        raise UserError(str(e)) from None


def parse_batch_sizes(values: list[str]) -> list[int]:
    """'1,8,32' and repeated flags -> [1, 8, 32]; each must be a positive integer."""
    sizes: list[int] = []
    for v in values:
        for part in str(v).split(","):
            part = part.strip()
            try:
                n = int(part)
            except ValueError:
                raise UserError(f"batch size must be a positive integer, got {part!r}") from None
            if n <= 0:
                raise UserError(f"batch size must be a positive integer, got {n}")
            sizes.append(n)
    if not sizes:
        raise UserError("no batch size given")
    return sizes


def check_writable(folder: Path) -> Path:
    """Create `folder` if needed and prove a file can be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UserError(f"cannot write results to {folder}: {e.strerror or e}") from None
    return folder


@app.command()
@user_errors
def devices(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show this machine's CPU and GPUs, each matched to its nameplate spec row."""
    from harness.devices import detect_machine
    from harness.specs import match_spec

    m = detect_machine()
    if as_json:
        out.print_json(json.dumps(m.to_dict()))
        return
    c = m.cpu
    t = Table(title=f"CPU on {m.hostname} ({m.os})", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("model", c.model)
    t.add_row("cores", f"{c.physical_cores} physical, {c.logical_cores} logical, {c.sockets} socket(s)")
    t.add_row("ISA", " ".join(c.isa) or "-")
    t.add_row("memory", f"{c.memory_gib} GiB")
    t.add_row("max clock", f"{c.max_clock_mhz:.0f} MHz" if c.max_clock_mhz else "unknown")
    peak = (
        f"FP64 {c.peak_fp64_tflops:.3f} TFLOPS, FP32 {c.peak_fp32_tflops:.3f} TFLOPS"
        if c.peak_fp64_tflops
        else "unknown"
    )
    t.add_row("nameplate peak", f"{peak}\n{c.peak_method}")
    out.print(t)
    if not m.gpus:
        out.print("GPUs: none found (NVML and torch.cuda see no device)")
        return
    g = Table(title="GPUs")
    for col in ("#", "name", "memory", "driver", "CUDA", "power limit", "SM clock", "spec row"):
        g.add_column(col)
    for gpu in m.gpus:
        g.add_row(
            str(gpu.index), gpu.name, f"{gpu.memory_gib} GiB", gpu.driver or "-",
            gpu.cuda_version or "-",
            f"{gpu.power_limit_w:.0f} W" if gpu.power_limit_w else "-",
            f"{gpu.sm_clock_mhz:.0f}/{gpu.max_sm_clock_mhz:.0f} MHz" if gpu.max_sm_clock_mhz else "-",
            gpu.spec_row or "no row: MFU unknown",
        )  # fmt: skip
    out.print(g)
    for gpu in m.gpus:
        row = match_spec(gpu.name)
        if row:
            peaks = ", ".join(f"{k} {v:g}" for k, v in row.peaks.items())
            mark = f" (unconfirmed: {', '.join(row.unconfirmed)})" if row.unconfirmed else ""
            out.print(f"GPU {gpu.index} dense nameplate TFLOPS: {peaks}{mark}\n  source: {row.source}")


@app.command()
@user_errors
def models(
    pattern: Annotated[str, typer.Argument(help="Glob on preset names, e.g. 'steel-*'.")] = "*",
) -> None:
    """List the registered model presets with their input, parameters and GFLOPs per sample."""
    from harness.flops import param_count, preset_flops_per_sample
    from models import list_presets
    from models.llm import LLM_CONFIGS

    presets = list_presets(pattern)
    if not presets and not fnmatch.filter(LLM_CONFIGS, pattern):
        raise UserError(f"no preset matches {pattern!r}")
    t = Table(title="vision presets (weights: seeded random init unless --weights)")
    for col in (
        "name",
        "industry",
        "task",
        "architecture",
        "input WxH",
        "classes",
        "params",
        "GFLOPs",
    ):
        t.add_column(col, justify="right" if col in ("classes", "params", "GFLOPs") else "left")
    for p in presets:
        flops = preset_flops_per_sample(p.builder, p.num_classes, p.input_hw)
        t.add_row(
            p.name, p.industry, p.task, p.arch, f"{p.input_hw[1]}x{p.input_hw[0]}",
            str(p.num_classes), f"{param_count(p.builder, p.num_classes) / 1e6:.1f}M",
            f"{flops / 1e9:.2f}",
        )  # fmt: skip
    if presets:
        out.print(t)
        out.print("GFLOPs: per sample, one multiply-add = 2 FLOPs, counted from the graph (conv + matmul).")
    from models.llm import LLM_CONFIGS, decode_flops

    llms = [c for n, c in LLM_CONFIGS.items() if fnmatch.fnmatch(n, pattern)]
    if llms:
        t = Table(title="LLM presets (`modelpower run-llm`; seeded random init, or a local checkpoint folder)")
        for col in ("name", "family", "params", "layers", "hidden", "heads / kv heads", "context", "GFLOPs/token @1k"):
            t.add_column(col, justify="left" if col in ("name", "family") else "right")
        for c in llms:
            n = c.param_count()
            size = f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"
            heads = f"{c.num_heads} / {c.num_kv_heads}"
            gflops = f"{decode_flops(c, 1024) / 1e9:.2f}"
            t.add_row(c.name, c.family, size, str(c.num_layers), str(c.hidden_size), heads, str(c.max_position), gflops)
        out.print(t)


def _results_table(points) -> Table:
    t = Table(title="results (latency per batch, ms)")
    cols = ("model", "backend", "device", "prec", "batch", "samples/s", "e2e p50", "e2e p99", "pre", "infer",
            "post", "GFLOP/sample", "TFLOPS", "MFU", "J/sample", "flags")  # fmt: skip
    for c in cols:
        t.add_column(c, justify="left" if c in ("model", "backend", "device", "prec", "flags") else "right")
    for p in points:
        t.add_row(
            p.model, p.backend, p.device + (f" r{p.rank}" if getattr(p, "rank", None) is not None else ""),
            p.precision, str(p.batch_size), f"{p.throughput_sps:.1f}",
            f"{p.e2e.p50_ms:.1f}", f"{p.e2e.p99_ms:.1f}", _stage(p, "pre"),
            _stage(p, "infer"), _stage(p, "post"),
            f"{p.flops_per_sample / 1e9:.2f}", f"{p.delivered_tflops:.3f}",
            f"{100 * p.mfu:.1f}%" if p.mfu is not None else "unknown",
            _joules(p), " ".join(p.flags),
        )  # fmt: skip
    return t


def _stage(p, name: str) -> str:
    st = p.staged.get(name)
    return f"{st.mean_ms:.2f}" if st else "-"


def _joules(p) -> str:
    if p.joules_per_sample is None:
        return "not measured"
    return f"{p.joules_per_sample:.3g}" + (" (estimate)" if p.energy and p.energy.get("estimate") else "")


def _footnotes(points) -> None:
    for src in dict.fromkeys(p.mfu_peak_source for p in points if p.mfu_peak_source):
        out.print(f"MFU denominator: {src}", highlight=False)
    for method in dict.fromkeys(p.energy["method"] for p in points if p.energy):
        scope = next(p.energy["scope"] for p in points if p.energy and p.energy["method"] == method)
        out.print(f"energy: {method} (scope: {scope})", highlight=False)


def run_benchmark(
    model_names: list[str],
    batch_sizes: list[str],
    device: str,
    precision: str,
    warmup: int,
    min_duration: float,
    min_iters: int,
    out_dir: Path,
    weights: Path | None,
    images: Path | None,
    image_size: str,
    num_images: int,
    seed: int,
    preprocess: str = "numba",
    assume_watts: float | None = None,
    spec: Path | None = None,
    backends: list[str] | None = None,
    compile_mode: str = "default",
    cache_dir: Path | None = None,
    combos: list[tuple[str, str]] | None = None,
    input_shape: list[str] | None = None,
    input_dtype: str = "float32",
    loadgen: loadgen_mod.LoadgenConfig | None = None,
    dist: distributed.DistContext | None = None,
    keep_going: bool = False,
) -> Path:
    """Validate everything first, then measure each model x batch size, writing after each point.

    `loadgen`: run each point as an MLPerf LoadGen test instead. `dist`: this process is one
    torchrun worker (harness/distributed.py): it measures its own device, rank 0 writes the result.
    """
    import torch

    from harness.backends import BACKENDS
    from harness.devices import resolve_device
    from harness.energy import select_meter
    from harness.images import folder_images, parse_size, synthetic_images
    from harness.loadgen import describe as describe_loadgen
    from harness.loadgen import import_loadgen, measure_loadgen
    from harness.provenance import now_iso, provenance
    from harness.results import SCHEMA_VERSION, RunResult, new_run_id, write_result
    from harness.runner import PRECISIONS, PREPROCESS, RunSettings, load_model, measure_onnx, measure_point
    from models import get_preset
    from models.weights import check_weights

    onnx_files = [Path(n) for n in model_names if n.endswith(".onnx")]
    presets = [get_preset(n) for n in model_names if not n.endswith(".onnx")]
    if onnx_files and presets:
        raise UserError("run presets and ONNX files in separate commands")
    sizes = parse_batch_sizes(batch_sizes)
    if combos is None:
        if precision not in PRECISIONS:
            raise UserError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
        names = [b.strip() for v in (backends or ["torch"]) for b in v.split(",") if b.strip()]
        for b in names:
            if b not in BACKENDS:
                raise UserError(
                    f"unknown backend {b!r}: use {', '.join(BACKENDS)} (`modelpower backends` says which run here)"
                )
        combos = [(b, precision) for b in dict.fromkeys(names)]
    if preprocess not in PREPROCESS:
        raise UserError(f"unknown --preprocess {preprocess!r}: use {', '.join(PREPROCESS)}")
    if preprocess == "opencv":
        try:
            import cv2  # noqa: F401
        except ImportError:
            raise UserError("--preprocess opencv needs OpenCV: pip install opencv-python-headless") from None
    if warmup < 0 or min_iters < 1 or min_duration < 0:
        raise UserError("need --warmup >= 0, --min-iters >= 1 and --min-duration >= 0")
    if weights is not None and (len(presets) != 1 or onnx_files):
        raise UserError("--weights applies to one model; name exactly one")
    if weights is not None:
        check_weights(presets[0], weights)
    if assume_watts is not None and not assume_watts > 0:
        raise UserError(f"--assume-watts must be a positive number of watts, got {assume_watts}")
    if spec is not None:
        use_spec_file(spec)
    if loadgen is not None:
        if onnx_files:
            raise UserError("--scenario runs presets; ONNX files run without LoadGen")
        import_loadgen()
        for bs in sizes:
            loadgen.check(bs)
    dev, why = resolve_device(device) if dist is None else dist.device()
    for b, prec in combos:
        check_backend(b, dev, prec)
    check_writable(out_dir)
    if onnx_files:
        from harness import onnx_model as ox

        for f in onnx_files:  # every bad file is refused before anything runs
            ox.parse_input_shapes(ox.load_onnx(f), input_shape or [])
        if input_dtype not in ox.DTYPES:
            raise UserError(f"--input-dtype must be one of {', '.join(ox.DTYPES)}, got {input_dtype!r}")
    if images is not None:
        source = folder_images(images)
    else:
        h, w = parse_size(image_size)
        source = synthetic_images(num_images, h, w, seed)
    err.print(f"device: {why}", highlight=False)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True

    meter = select_meter(dev.type, dev.index or 0, assume_watts)
    meter.idle()
    settings = RunSettings(
        device=dev, precision=precision, warmup=warmup, min_duration=min_duration,
        min_iters=min_iters, seed=seed, compile_mode=compile_mode,
        cache_dir=cache_dir or Path.home() / ".cache" / "modelpower",
    )  # fmt: skip
    started = now_iso()
    if dist is None:
        run_id = new_run_id()
        path = out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{run_id}.json"
    else:  # the launcher named the file: DATE-TIME-RUNID.json
        path = dist.result_path
        run_id = path.stem.rsplit("-", 1)[-1]
    writes = dist is None or dist.rank == 0
    result = RunResult(
        schema_version=SCHEMA_VERSION, run_id=run_id, status="running", started_at=started,
        ended_at=None, command=" ".join(["modelpower", *sys.argv[1:]]),
        config={
            "models": model_names, "batch_sizes": sizes, "device": str(dev), "device_choice": why,
            "precision": precision, "backends": [f"{b}:{p}" for b, p in combos], "compile_mode": compile_mode,
            "warmup": warmup, "min_duration_s": min_duration,
            "min_iters": min_iters, "seed": seed, "input": source.description,
            "cudnn_benchmark": dev.type == "cuda", "weights": str(weights) if weights else None,
            "preprocess": preprocess, "energy_meter": meter.name, "assume_watts": assume_watts,
            "spec_file": str(spec) if spec else None,
        },
        provenance=provenance(),
    )  # fmt: skip
    if writes:
        write_result(result, path)
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn())  # fmt: skip
    try:
        for f in onnx_files:
            s = replace(settings, backend="onnxruntime")
            with Progress(*columns, console=err, transient=True) as bar:
                task = bar.add_task(f"{f.name} onnxruntime", total=1.0, info="loading")
                tick = lambda phase, elapsed, n, bar=bar, task=task: bar.update(  # noqa: E731
                    task, completed=min(1.0, max(elapsed / max(min_duration, 1e-9), n / min_iters)),
                    info=f"{n} batches, {elapsed:.1f}s")  # fmt: skip
                result.points.append(measure_onnx(f, input_shape or [], input_dtype, s, tick, meter))
            write_result(result, path)
        for preset in presets:
            err.print(f"loading {preset.name} ...", highlight=False)
            lm = load_model(preset, settings, weights)
            for bs, (backend, prec) in ((bs, c) for c in combos for bs in sizes):
                s = replace(settings, backend=backend, precision=prec)
                with Progress(*columns, console=err, transient=True) as bar:
                    label = f"{preset.name} {backend} {prec} batch {bs}"
                    task = bar.add_task(label, total=2.0, info="preparing backend")

                    def tick(phase, elapsed, n, bar=bar, task=task):
                        frac = min(1.0, max(elapsed / max(min_duration, 1e-9), n / min_iters))
                        done = (0.0 if phase == "staged" else 1.0) + min(frac, 1.0)
                        bar.update(task, completed=done, info=f"{phase}: {n} batches, {elapsed:.1f}s")

                    hook = dist.barrier if dist is not None else None  # windows start together on every rank
                    if keep_going:
                        try:
                            point = measure_point(lm, bs, source, s, tick, preprocess, meter, hook)
                        except Exception as e:
                            msg = f"{preset.name} {backend} {prec} batch {bs} failed: {str(e).splitlines()[0][:200]}"
                            result.notes.append(msg)
                            err.print(f"warning: {msg}", highlight=False)
                            continue
                    elif loadgen is not None:
                        bar.update(task, info=f"LoadGen {loadgen.scenario}: calibrating, then at least "
                                              f"{loadgen.duration_s:g} s")  # fmt: skip
                        rank = f"-rank{dist.rank}" if dist is not None else ""  # one LoadGen test per rank
                        log_dir = out_dir / f"{path.stem}-loadgen" / f"{preset.name}-{backend}-{prec}-b{bs}{rank}"
                        point = measure_loadgen(lm, bs, source, s, loadgen, log_dir, preprocess, meter, hook)
                    else:
                        point = measure_point(lm, bs, source, s, tick, preprocess, meter, hook)
                if dist is not None:
                    point.rank, point.world_size = dist.rank, dist.world_size
                result.points.append(point)
                if dist is not None:
                    dist.publish(result)  # rank 0 gathers every rank's points, writes the result
                else:
                    write_result(result, path)
        result.status = "complete"
    except KeyboardInterrupt:
        result.status = "incomplete"
        result.notes.append(f"interrupted by the user after {len(result.points)} point(s)")
        err.print(f"interrupted: keeping the {len(result.points)} finished point(s)")
    finally:
        result.ended_at = now_iso()
        if result.status == "running":  # an exception is on its way out
            result.status = "incomplete"
            result.notes.append("stopped by an error")
        if dist is not None:
            dist.finish(result)
        else:
            write_result(result, path)
    if not writes:
        return path
    if result.points:
        out.print(_results_table(result.points))
        _footnotes(result.points)
        for p in result.points:
            if getattr(p, "loadgen", None):
                out.print("LoadGen " + describe_loadgen(p), highlight=False)
    out.print(f"result written to {path}", highlight=False)
    if result.status == "incomplete":
        raise typer.Exit(130)
    return path


BatchOpt = Annotated[list[str], typer.Option("--batch-size", "-b", help="Batch size; a list sweeps: -b 1,8,32.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
PrecisionOpt = Annotated[str, typer.Option(help="fp32, fp16, bf16 (torch backends) or int8 (onnxruntime).")]
CacheOpt = Annotated[
    Path | None, typer.Option(help="Folder for exported ONNX files and TensorRT engines [~/.cache/modelpower].")
]
WarmupOpt = Annotated[int, typer.Option(help="Warm-up batches, excluded from every window.")]
DurationOpt = Annotated[float, typer.Option(help="Minimum seconds per measurement window.")]
ItersOpt = Annotated[int, typer.Option(help="Minimum batches per measurement window.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Folder for the result JSON.")]
ImagesOpt = Annotated[Path | None, typer.Option(help="Folder of .jpg/.png images to use instead of generated ones.")]
SizeOpt = Annotated[str, typer.Option(help="Generated image size WxH (a camera frame).")]
NumImagesOpt = Annotated[int, typer.Option(help="How many distinct generated images to cycle.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for random weights and generated images.")]
SpecOpt = Annotated[
    Path | None, typer.Option(help="A spec TOML ([[device]] rows) adding or overriding nameplate peaks.")
]


@app.command()
@user_errors
def run(
    model: Annotated[list[str], typer.Argument(help="Preset name(s) (`modelpower models`) or .onnx file(s).")],
    batch_size: BatchOpt = ["1"],  # noqa: B006
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    warmup: WarmupOpt = 2,
    min_duration: DurationOpt = 5.0,
    min_iters: ItersOpt = 10,
    out_dir: OutOpt = Path("results"),
    weights: Annotated[Path | None, typer.Option(help="Weights: .safetensors or a torch state dict.")] = None,
    images: ImagesOpt = None,
    image_size: SizeOpt = "1920x1080",
    num_images: NumImagesOpt = 16,
    seed: SeedOpt = 0,
    preprocess: Annotated[
        str,
        typer.Option(
            help="Data path: numba (our kernels; on a GPU, CUDA kernels on the device), opencv or "
            "torchvision (the libraries people use, pre- and post-processing)."
        ),
    ] = "numba",
    assume_watts: Annotated[
        float | None,
        typer.Option(help="No energy counter? Estimate energy as these watts x time; labelled an estimate."),
    ] = None,
    spec: SpecOpt = None,
    backend: Annotated[
        list[str],
        typer.Option(help="Backend(s), a list runs each: torch, torch-compile, onnxruntime, onnxruntime-trt."),
    ] = ["torch"],  # noqa: B006
    compile_mode: Annotated[str, typer.Option(help="torch-compile mode: default, reduce-overhead, max-autotune.")] = (
        "default"
    ),
    cache_dir: CacheOpt = None,
    input_shape: Annotated[
        list[str] | None, typer.Option(help="ONNX files: input shape, 1x3x224x224 or NAME:1x3x224x224 (repeatable).")
    ] = None,
    input_dtype: Annotated[str, typer.Option(help="ONNX files: input dtype (float32, float16, int64, ...).")] = (
        "float32"
    ),
    scenario: Annotated[
        str | None,
        typer.Option(help="Run each point as an MLPerf LoadGen test: offline, server, singlestream, multistream."),
    ] = None,
    claim_grade: Annotated[
        bool, typer.Option(help="LoadGen: MLPerf's 600 s minimum duration and minimum query counts.")
    ] = False,
    target_qps: Annotated[
        float | None, typer.Option(help="LoadGen server: queries/s to offer [half the calibrated throughput].")
    ] = None,
    latency_bound_ms: Annotated[
        float, typer.Option(help="LoadGen server: latency bound at the 99th percentile (MLPerf ResNet-50: 15).")
    ] = 15.0,
    loadgen_samples: Annotated[
        int, typer.Option(help="LoadGen: pre-processed samples held on the device (MLPerf ResNet-50: 1024).")
    ] = 1024,
    nproc_per_node: Annotated[
        int | None, typer.Option(help="Many devices: one worker per device through torchrun (GPUs: one each).")
    ] = None,
    nnodes: Annotated[int, typer.Option(help="Many nodes: how many (with --rdzv-endpoint).")] = 1,
    node_rank: Annotated[int, typer.Option(help="Many nodes: this node's rank, 0..nnodes-1.")] = 0,
    rdzv_endpoint: Annotated[
        str | None, typer.Option(help="Many nodes: HOST:PORT of the rendezvous, the same on every node.")
    ] = None,
) -> None:
    """Benchmark presets end to end (pre-process, infer, post-process), or your own model.onnx
    through ONNX Runtime, and write a result."""
    from harness import distributed

    if nproc_per_node is not None and not distributed.in_worker():
        from harness.results import new_run_id

        check_writable(out_dir)
        path = out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{new_run_id()}.json"
        raise typer.Exit(distributed.launch(nproc_per_node, nnodes, node_rank, rdzv_endpoint, sys.argv[1:], path))
    dist = distributed.DistContext.from_env(device) if distributed.in_worker() else None
    loadgen = None
    if scenario is not None:
        from harness.loadgen import LoadgenConfig

        loadgen = LoadgenConfig(scenario.strip().lower(), min_duration, claim_grade, target_qps, latency_bound_ms,
                                loadgen_samples)  # fmt: skip
    elif claim_grade or target_qps is not None:
        raise UserError("--claim-grade and --target-qps apply to LoadGen runs: add --scenario")
    run_benchmark(model, batch_size, device, precision, warmup, min_duration, min_iters, out_dir,
                  weights, images, image_size, num_images, seed, preprocess, assume_watts, spec,
                  backend, compile_mode, cache_dir, None, input_shape, input_dtype, loadgen, dist)  # fmt: skip


@app.command()
@user_errors
def quick(
    device: DeviceOpt = "auto",
    out_dir: OutOpt = Path("results"),
    min_duration: DurationOpt = 3.0,
) -> None:
    """A quick benchmark of this machine: one classifier, one detector, one segmenter, batch 4."""
    run_benchmark(QUICK_MODELS, ["4"], device, "fp32", 2, min_duration, 5, out_dir, None, None,
                  "1920x1080", 16, 0)  # fmt: skip


@app.command()
@user_errors
def kernels(
    quick: Annotated[bool, typer.Option(help="Quarter-size inputs: a quick look, not the target shapes.")] = False,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Also write the table as JSON here.")] = None,
    device: Annotated[
        str, typer.Option(help="cpu (host kernels vs OpenCV/torch) or cuda[:N] (CUDA kernels vs torch CUDA).")
    ] = "cpu",
) -> None:
    """Benchmark our Numba kernels against the libraries people use, side by side in one run."""
    from harness import kernel_bench
    from harness.devices import resolve_device
    from harness.provenance import now_iso

    if out_dir is not None:
        check_writable(out_dir)
    dev, _ = resolve_device(device)
    started = now_iso()
    with err.status("measuring copy bandwidth ...") as status:
        rows, bw = kernel_bench.run(0.25 if quick else 1.0, lambda n: status.update(f"timing {n} ..."), dev)
    t = Table(title=f"kernels vs peers (median ms; copy bandwidth measured now: {bw:.1f} GB/s read+write)")
    for col in (
        "kernel",
        "workload",
        "ours",
        "peer",
        "peer ms",
        "speed-up",
        "target",
        "GB/s",
        "% of copy",
        "1st call",
    ):
        t.add_column(col, justify="left" if col in ("kernel", "workload", "peer") else "right")
    for r in rows:
        met = "" if r.target is None else (" ok" if r.speedup >= r.target else " MISSED")
        t.add_row(
            r.kernel, r.shape, f"{r.ours_ms:.2f}", r.peer, f"{r.peer_ms:.2f}", f"{r.speedup:.2f}x",
            f"{r.target:g}x{met}" if r.target else "-", f"{r.gbs:.1f}" if r.gbs else "-",
            f"{100 * r.copy_fraction:.0f}%" if r.copy_fraction else "-", f"{r.first_call_ms:.0f} ms",
        )  # fmt: skip
    out.print(t)
    out.print("1st call: our kernel's first call in this process (JIT compile, or loading Numba's on-disk cache).")
    if quick:
        out.print("--quick: shrunken inputs; the targets apply to the full shapes.")
    if out_dir is not None:
        from dataclasses import asdict

        body = {"quick": quick, "device": str(dev), "copy_bandwidth_gbs": bw, "rows": [asdict(r) for r in rows]}
        write_measurement(out_dir, "kernels", "modelpower-kernel-bench", started, body)


@app.command()
@user_errors
def peak(
    device: DeviceOpt = "auto",
    out_dir: OutOpt = Path("results"),
    spec: SpecOpt = None,
) -> None:
    """Measure the device's own peaks (dense GEMM per precision, copy bandwidth) beside its nameplate."""
    from harness.devices import resolve_device
    from harness.peak import measure_peaks
    from harness.provenance import now_iso

    if spec is not None:
        use_spec_file(spec)
    dev, why = resolve_device(device)
    check_writable(out_dir)
    err.print(f"device: {why}", highlight=False)
    started = now_iso()
    with err.status("measuring ...") as status:
        res = measure_peaks(dev, progress=lambda p: status.update(f"measuring {p} ..."))
    t = Table(title=f"measured peaks of {res['device_name']} ({res['device']})")
    for col in ("precision", "best n", "measured TFLOPS", "nameplate dense", "measured / nameplate", "note"):
        t.add_column(col, justify="left" if col in ("precision", "note") else "right")
    for r in res["gemm"]:
        t.add_row(
            r["precision"] + (" (TOPS)" if r["precision"] == "int8" else ""),
            str(r["best_n"] or "-"),
            f"{r['measured_tflops']:.3f}" if r["measured_tflops"] is not None else "-",
            f"{r['nameplate_tflops']:g}" if r["nameplate_tflops"] else "unknown",
            f"{100 * r['ratio']:.0f}%" if r["ratio"] else "-",
            r["note"],
        )
    plate = res["copy_nameplate_gbs"]
    ratio = f"{100 * res['copy_ratio']:.0f}%" if res["copy_ratio"] else "-"
    plate_txt = f"{plate:g}" if plate else "unknown"
    t.add_row("copy (GB/s)", "-", f"{res['copy_gbs']:.1f}", plate_txt, ratio, "read + write counted")
    out.print(t)
    out.print(f"nameplate: {res['nameplate_source']}", highlight=False)
    write_measurement(out_dir, "peak", "modelpower-peak", started, res)


@app.command()
@user_errors
def claim(
    files: Annotated[
        list[Path],
        typer.Argument(help="Claim .toml files and measurement .json files (results, a `peak` file), in any order."),
    ],
    results: Annotated[
        list[Path] | None, typer.Option("--results", "-r", help="A result JSON file to use (repeatable).")
    ] = None,
    peak_file: Annotated[
        Path | None, typer.Option("--peak", help="A `modelpower peak` file: the measured computer for equivalences.")
    ] = None,
    spec: SpecOpt = None,
) -> None:
    """Check compute claims: the arithmetic step by step, and a verdict, from nameplate data and measurements."""
    from harness.claims import ClaimError, check_claim, load_claims
    from harness.devices import detect_cpu
    from harness.results import read_result

    if spec is not None:
        use_spec_file(spec)
    claim_files = [f for f in files if f.suffix == ".toml"]
    result_files = list(results or [])
    for f in files:
        if f.suffix == ".toml":
            continue
        if f.suffix != ".json":
            raise UserError(f"{f}: expected a claim .toml or a measurement .json file")
        kind = _json_kind(f)
        if kind == "modelpower-peak":
            peak_file = f
        elif kind is None:
            result_files.append(f)
    if not claim_files:
        raise UserError("no claim file given (.toml; see claims/README.md)")
    try:
        claims = [c for f in claim_files for c in load_claims(f)]
    except ClaimError as e:
        raise UserError(str(e)) from None
    points = [p for r in result_files for p in read_result(r).points]
    computer = _computer(peak_file, detect_cpu())
    for c in claims:
        v = check_claim(c, points, computer)
        out.rule(f"[bold]{c.id}[/bold] ({c.kind})")
        if c.text:
            out.print(f"claim: {c.text}", highlight=False)
        for i, step in enumerate(v.steps, 1):
            out.print(f"  {i}. {step}", highlight=False)
        out.print(f"[bold]verdict:[/bold] {v.verdict}", highlight=False)
    if not points:
        out.print("(no --results given: delivered compute is not measured in these verdicts)")


def _json_kind(path: Path) -> str | None:
    """The `kind` of a modelpower JSON file (peak, kernel bench), None for a run result."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    return doc.get("kind") if isinstance(doc, dict) else None


def _computer(peak_file: Path | None, cpu) -> dict:
    """This machine as 'a computer': measured GEMM peaks from a peak file, else its computed nameplate."""
    if peak_file is None:
        return {"name": f"this machine ({cpu.model}, {cpu.physical_cores} cores)", "how": "computed nameplate",
                "fp32": cpu.peak_fp32_tflops, "fp64": cpu.peak_fp64_tflops}  # fmt: skip
    try:
        doc = json.loads(Path(peak_file).read_text())
        gemm = {r["precision"]: r["measured_tflops"] for r in doc["gemm"]}
        name = doc["device_name"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{peak_file} is not a `modelpower peak` file: {e}") from None
    if doc.get("kind") != "modelpower-peak":
        raise UserError(f"{peak_file} is not a `modelpower peak` file")
    return {"name": f"{name} ({doc['device']})", "how": f"measured by modelpower peak, {peak_file}",
            "fp32": gemm.get("fp32"), "fp64": gemm.get("fp64")}  # fmt: skip


@app.command()
@user_errors
def backends(
    model: Annotated[
        str | None, typer.Argument(help="A preset: run it through every backend x precision available here.")
    ] = None,
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = ["8"],  # noqa: B006
    min_duration: DurationOpt = 3.0,
    out_dir: OutOpt = Path("results"),
    cache_dir: CacheOpt = None,
) -> None:
    """List the backends and whether they run here; with a preset, compare them all in one table."""
    from harness.backends import BACKENDS
    from harness.devices import resolve_device

    dev, _ = resolve_device(device)
    t = Table(title=f"backends on {dev}")
    for col in ("backend", "available", "why", "precisions"):
        t.add_column(col)
    combos = []
    for name, b in BACKENDS.items():
        ok, reason = b.available(dev)
        runnable = []
        for prec in b.precisions:
            try:
                check_backend(name, dev, prec)
                runnable.append(prec)
            except UserError:
                pass
        t.add_row(name, "yes" if ok else "no", reason, ", ".join(runnable) if ok else "-")
        combos += [(name, prec) for prec in runnable] if ok else []
    out.print(t)
    if model is None:
        return
    path = run_benchmark([model], batch_size, device, "fp32", 2, min_duration, 5, out_dir, None, None,
                         "1920x1080", 16, 0, cache_dir=cache_dir, combos=combos, keep_going=True)  # fmt: skip
    from harness.results import read_result

    points = read_result(path).points
    base = {p.batch_size: p.throughput_sps for p in points if p.backend == "torch" and p.precision == "fp32"}
    r = Table(title=f"{model}: every backend x precision on {dev} (end-to-end samples/s)")
    for col in ("backend", "prec", "batch", "samples/s", "vs torch fp32", "infer ms", "compile s", "agreement"):
        r.add_column(col, justify="left" if col in ("backend", "prec", "agreement") else "right")
    for p in points:
        a = p.agreement or {}
        task_key = next((k for k in ("top1_agreement", "box_set_agreement", "pixel_agreement") if k in a), None)
        verdict = ("pass" if a.get("passed") else "FAIL") + f" (rel err {a.get('max_rel_err', float('nan')):.1e}"
        verdict += f", {task_key.split('_')[0]} {100 * a[task_key]:.0f}%)" if task_key else ")"
        ratio = p.throughput_sps / base[p.batch_size] if p.batch_size in base else None
        r.add_row(p.backend, p.precision, str(p.batch_size), f"{p.throughput_sps:.1f}",
                  f"{ratio:.2f}x" if ratio else "-", f"{p.staged['infer'].mean_ms:.1f}",
                  f"{p.compile_s:.1f}" if p.compile_s is not None else "-", verdict)  # fmt: skip
    out.print(r)


@app.command("run-llm")
@user_errors
def run_llm(
    model: Annotated[
        str,
        typer.Argument(help="An LLM preset (llm-tiny, qwen2-0.5b, ... llama3-70b) or a local HF checkpoint folder."),
    ],
    batch_size: BatchOpt = ["1"],  # noqa: B006
    prompt_len: Annotated[list[str], typer.Option(help="Prompt tokens; a list sweeps: 128,512.")] = ["128"],  # noqa: B006
    output_len: Annotated[list[str], typer.Option(help="Generated tokens (no stop at EOS); a list sweeps.")] = ["64"],  # noqa: B006
    device: DeviceOpt = "auto",
    precision: Annotated[str, typer.Option(help="fp32, fp16 or bf16.")] = "bf16",
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    top_k: Annotated[int, typer.Option(help="Top-k (0 = all tokens).")] = 0,
    top_p: Annotated[float, typer.Option(help="Top-p (1 = off).")] = 1.0,
    compile: Annotated[
        bool | None, typer.Option(help="torch.compile the decode step [default: on a GPU only].")
    ] = None,
    prompts: Annotated[
        Path | None, typer.Option(help="Prompts file: one line of space-separated token ids per prompt.")
    ] = None,
    min_duration: DurationOpt = 5.0,
    min_iters: Annotated[int, typer.Option(help="Minimum generations per point.")] = 3,
    out_dir: OutOpt = Path("results"),
    seed: SeedOpt = 0,
    assume_watts: Annotated[float | None, typer.Option(help="Estimate energy as W x time (labelled).")] = None,
) -> None:
    """Benchmark LLM generation: TTFT, inter-token latency, tokens/s, prefill MFU, decode MBU, energy."""
    import torch

    from harness.devices import resolve_device
    from harness.energy import select_meter
    from harness.llm_runner import DTYPES, Workload, check_workload, measure_llm
    from harness.provenance import now_iso, provenance
    from harness.results import SCHEMA_VERSION, RunResult, new_run_id, write_result
    from models.llm import LLM_CONFIGS, build_llm
    from models.llm_checkpoint import load_checkpoint, read_config

    if precision not in DTYPES:
        raise UserError(f"unknown precision {precision!r}: use {', '.join(DTYPES)}")
    sizes, plens, olens = (parse_batch_sizes(v) for v in (batch_size, prompt_len, output_len))
    if model in LLM_CONFIGS:
        cfg = LLM_CONFIGS[model]
    elif Path(model).exists():
        cfg = read_config(Path(model))
    else:
        import difflib

        close = difflib.get_close_matches(model, list(LLM_CONFIGS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"unknown LLM preset or checkpoint folder {model!r}{hint} (presets: {', '.join(LLM_CONFIGS)})")
    file_prompts = _read_prompts(prompts, cfg.vocab_size) if prompts else None
    for b in sizes:
        for t in plens:
            for n in olens:
                check_workload(Workload(b, t, n), cfg.max_position)
    dev, why = resolve_device(device)
    if dev.type == "cpu" and precision == "fp16":
        raise UserError("fp16 on the CPU is not supported; use fp32 or bf16")
    if dev.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise UserError(f"{torch.cuda.get_device_name(dev)} does not run bf16; use fp16 or fp32")
    check_writable(out_dir)
    err.print(f"device: {why}", highlight=False)
    meter = select_meter(dev.type, dev.index or 0, assume_watts)
    meter.idle()
    t = time.perf_counter()
    if model in LLM_CONFIGS:
        lm = build_llm(cfg, dev, DTYPES[precision], seed)
        source = {"kind": "random-init", "seed": seed}
    else:
        lm = load_checkpoint(Path(model), dev, DTYPES[precision])
        source = {"kind": "checkpoint", "path": str(Path(model).resolve())}
    load_s = time.perf_counter() - t
    compile_decode = dev.type == "cuda" if compile is None else compile
    run_id = new_run_id()
    path = out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{run_id}.json"
    result = RunResult(
        schema_version=SCHEMA_VERSION, run_id=run_id, status="running", started_at=now_iso(), ended_at=None,
        command=" ".join(["modelpower", *sys.argv[1:]]),
        config={"model": model, "batch_sizes": sizes, "prompt_lens": plens, "output_lens": olens, "device": str(dev),
                "precision": precision, "compile": compile_decode, "seed": seed, "energy_meter": meter.name,
                "prompts": str(prompts) if prompts else "synthetic token ids", "assume_watts": assume_watts},
        provenance=provenance(),
    )  # fmt: skip
    write_result(result, path)
    grid = [(b, t, n) for b in sizes for t in plens for n in olens]
    try:
        for b, t, n in grid:
            w = Workload(b, t, n, temperature, top_k, top_p, seed)
            pr = None
            if file_prompts is not None:
                pr = torch.tensor([file_prompts[i % len(file_prompts)][:t] for i in range(b)], device=dev)
                if pr.shape[1] < t:
                    raise UserError(f"prompts file lines are shorter than --prompt-len {t}")
            with err.status(f"{cfg.name} batch {b}, prompt {t}, output {n} ...") as status:
                point = measure_llm(
                    lm, w, dev, precision, source, min_duration, min_iters, compile_decode, meter, pr, load_s,
                    progress=lambda e, k, status=status, b=b, t=t, n=n: status.update(
                        f"{cfg.name} batch {b}, prompt {t}, output {n}: {k} generations, {e:.1f}s"),
                )  # fmt: skip
            result.points.append(point)
            write_result(result, path)
        result.status = "complete"
    except KeyboardInterrupt:
        result.status = "incomplete"
        result.notes.append(f"interrupted by the user after {len(result.points)} point(s)")
    finally:
        result.ended_at = now_iso()
        if result.status == "running":
            result.status = "incomplete"
            result.notes.append("stopped by an error")
        write_result(result, path)
    _llm_table(result.points)
    out.print(f"result written to {path}", highlight=False)
    if result.status == "incomplete":
        raise typer.Exit(130)


def _read_prompts(path: Path, vocab: int) -> list[list[int]]:
    try:
        lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
        ids = [[int(v) for v in ln] for ln in lines]
    except OSError as e:
        raise UserError(f"cannot read prompts file {path}: {e.strerror or e}") from None
    except ValueError:
        raise UserError(f"prompts file {path}: every line must be space-separated token ids") from None
    if not ids or any(not (0 <= v < vocab) for ln in ids for v in ln):
        raise UserError(f"prompts file {path}: needs at least one line of token ids in [0, {vocab})")
    return ids


def _llm_table(points) -> None:
    t = Table(title="LLM generation (latencies in ms)")
    cols = ("model", "prec", "batch", "prompt", "output", "TTFT p50", "ITL p50", "ITL p99", "TPOT", "prefill tok/s",
            "decode tok/s", "prefill MFU", "decode GB/s", "MBU", "J/token", "status")  # fmt: skip
    for c in cols:
        t.add_column(c, justify="left" if c in ("model", "prec", "status") else "right")

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    for p in points:
        ok = p.status == "ok"
        t.add_row(
            p.model, p.precision, str(p.batch_size), str(p.prompt_len), str(p.output_len),
            f(p.ttft.p50_ms if ok else None, ".1f"), f(p.itl.p50_ms if ok and p.itl else None, ".2f"),
            f(p.itl.p99_ms if ok and p.itl else None, ".2f"), f(p.tpot_ms, ".2f"), f(p.prefill_tokens_per_s, ".0f"),
            f(p.decode_tokens_per_s, ".0f"), f(100 * p.prefill_mfu if p.prefill_mfu else None, ".1f"),
            f(p.decode_gbs, ".1f"), f(100 * p.decode_mbu if p.decode_mbu else None, ".1f"),
            f(p.joules_per_token, ".3g") if ok and p.joules_per_token is not None else ("not measured" if ok else "-"),
            p.status,
        )  # fmt: skip
    out.print(t)


@app.command()
@user_errors
def report(
    files: Annotated[
        list[Path], typer.Argument(help="Result JSON files (any devices, models, backends) and peak files.")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for report.md, report.html, metrics.csv.")
    ] = Path("report"),
    claims: Annotated[list[Path] | None, typer.Option(help="Claim TOML file(s) whose verdicts to include.")] = None,
    skip_bad: Annotated[bool, typer.Option(help="Leave out (and list) malformed or wrong-version files.")] = False,
    title: Annotated[str, typer.Option(help="The report's title.")] = "Inference benchmark report",
) -> None:
    """Write a procurement report: Markdown, self-contained HTML with plots, and a CSV of every point."""
    from harness import report as rp

    inp = rp.load_inputs(files, skip_bad)
    check_writable(out_dir)
    rows = rp.flat_rows(inp)
    verdicts = []
    if claims:
        from harness.claims import ClaimError, check_claim, load_claims
        from harness.devices import detect_cpu

        try:
            cl = [c for f in claims for c in load_claims(f)]
        except ClaimError as e:
            raise UserError(str(e)) from None
        points = [p for _, r in inp.results for p in r.points]
        computer = _computer(inp.peaks[0][0] if inp.peaks else None, detect_cpu())
        verdicts = [check_claim(c, points, computer) for c in cl]
    md, html = rp.render(inp, rows, verdicts, title)
    (out_dir / "report.md").write_text(md)
    (out_dir / "report.html").write_text(html)
    rp.write_csv(rows, out_dir / "metrics.csv")
    for s in inp.skipped:
        err.print(f"skipped: {s}", highlight=False)
    out.print(f"wrote {out_dir / 'report.html'}, {out_dir / 'report.md'} and {out_dir / 'metrics.csv'} "
              f"({len(rows)} points)", highlight=False)  # fmt: skip


@app.command()
@user_errors
def compare(
    a: Annotated[Path, typer.Argument(help="Result set A: a result file, or a folder of them.")],
    b: Annotated[Path, typer.Argument(help="Result set B, compared with A (B / A).")],
    skip_bad: Annotated[bool, typer.Option(help="Leave out (and list) malformed files.")] = False,
) -> None:
    """Side by side: the points two result sets share, with throughput ratios (device X vs Y, before vs after)."""
    from harness import report as rp

    def rows_of(p: Path):
        files = sorted(p.glob("*.json")) if p.is_dir() else [p]
        return rp.flat_rows(rp.load_inputs(files, skip_bad))

    pairs = rp.compare_rows(rows_of(a), rows_of(b))
    if not pairs:
        raise UserError("the two result sets share no point (same model, backend, precision, batch, lengths)")
    t = Table(title=f"B / A: {b} vs {a}")
    for col in ("point", "A device", "B device", "A", "B", "B / A", "A p99 ms", "B p99 ms"):
        t.add_column(col, justify="left" if col in ("point", "A device", "B device") else "right")
    for r in pairs:
        p99 = [f"{v:.1f}" if v is not None else "-" for v in (r["a_p99"], r["b_p99"])]
        t.add_row(r["label"], r["a_device"], r["b_device"], f"{r['a']:.1f} {r['unit']}", f"{r['b']:.1f}",
                  f"{r['ratio']:.2f}x", *p99)  # fmt: skip
    out.print(t)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning")
    app()


if __name__ == "__main__":
    main()
