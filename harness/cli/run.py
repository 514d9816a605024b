"""`modelpower run` and `modelpower quick`: the vision benchmark (harness/vision/bench.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import (
    AssumeWattsOpt,
    BatchOpt,
    CacheOpt,
    DeviceOpt,
    DurationOpt,
    ImagesOpt,
    ItersOpt,
    NumImagesOpt,
    OutOpt,
    PrecisionOpt,
    SeedOpt,
    SizeOpt,
    SpecOpt,
    WarmupOpt,
    cli_events,
    err,
    finish_run,
    out,
    user_errors,
)
from harness.errors import UserError
from harness.inputs import SEED, parse_sizes
from harness.measure.window import Window
from harness.results.session import RESULTS_DIR, ResultSession, new_result_path


def show_vision_run(session: ResultSession) -> None:
    """The results table, what its denominators are, where the file is; exit 130 if interrupted.
    Under torchrun only rank 0, which writes the file, prints."""
    from harness.cli.tables import print_footnotes, results_table
    from harness.vision.loadgen import describe

    if not session.sink.writes:
        return
    points = session.result.points
    if session.interrupted:
        err.print(f"interrupted: keeping the {len(points)} finished point(s)")
    if points:
        out.print(results_table(points))
        print_footnotes(points)
        for p in points:
            if getattr(p, "loadgen", None):
                out.print("LoadGen " + describe(p))
    for f in session.result.failed:
        out.print(f"not measured: {f['label']}: {f['detail']}")
    finish_run(session)


@user_errors
def run(  # long: its signature is the command's ~30 flags; the body only builds the request
    model: Annotated[
        list[str],
        typer.Argument(help="Preset name(s) (`modelpower models`), timm:NAME, torchvision:NAME, or .onnx file(s)."),
    ],
    batch_size: BatchOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = None,
    warmup: WarmupOpt = Window.warmup,
    min_duration: DurationOpt = Window.min_duration,
    min_iters: ItersOpt = Window.min_iters,
    out_dir: OutOpt = RESULTS_DIR,
    weights: Annotated[Path | None, typer.Option(help="Weights: .safetensors or a torch state dict.")] = None,
    images: ImagesOpt = None,
    image_size: SizeOpt = None,
    num_images: NumImagesOpt = None,
    seed: SeedOpt = SEED,
    preprocess: Annotated[
        str | None,
        typer.Option(
            help="Data path: numba (our kernels; on a GPU, CUDA kernels on the device), opencv or "
            "torchvision (the libraries people use, pre- and post-processing) [numba]."
        ),
    ] = None,
    assume_watts: AssumeWattsOpt = None,
    spec: SpecOpt = None,
    backend: Annotated[
        list[str] | None,
        typer.Option(
            help="Backend(s), a list runs each: torch, torch-compile, onnxruntime, onnxruntime-trt, openvino "
            "[torch]; an ONNX file: onnxruntime or openvino."
        ),
    ] = None,
    compile_mode: Annotated[
        str | None,
        typer.Option(
            help="torch-compile mode: auto (on a GPU the fastest of reduce-overhead and default that "
            "agrees; on the CPU default), default, reduce-overhead, max-autotune [auto]."
        ),
    ] = None,
    memory_format: Annotated[
        str | None,
        typer.Option(
            help="The model's layout on the torch backends: auto (channels_last for convolution models), "
            "channels_last or contiguous [auto]."
        ),
    ] = None,
    ort_option: Annotated[
        list[str] | None,
        typer.Option(
            help="ONNX Runtime CUDA/TensorRT provider option KEY=VALUE (repeatable), e.g. "
            "enable_cuda_graph=1, prefer_nhwc=1, cudnn_conv_algo_search=EXHAUSTIVE."
        ),
    ] = None,
    cache_dir: CacheOpt = None,
    input_shape: Annotated[
        list[str] | None, typer.Option(help="ONNX files: input shape, 1x3x224x224 or NAME:1x3x224x224 (repeatable).")
    ] = None,
    input_dtype: Annotated[
        str | None, typer.Option(help="ONNX files: input dtype (float32, float16, int64, ...) [float32].")
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help="ONNX files: classify, detect or segment runs the model in our pipeline, frames to results "
            "(without it: inference only, on random inputs)."
        ),
    ] = None,
    input_size: Annotated[
        str | None, typer.Option(help="--task: the model's input HEIGHTxWIDTH, e.g. 640x640 [read from the model].")
    ] = None,
    mean: Annotated[
        str | None,
        typer.Option(
            help="--task: per-channel mean on the 0..255 scale, one value or R,G,B "
            "[classify/segment: ImageNet's; detect: 0]."
        ),
    ] = None,
    std: Annotated[
        str | None,
        typer.Option(help="--task: per-channel std on the 0..255 scale [classify/segment: ImageNet's; detect: 255]."),
    ] = None,
    letterbox: Annotated[
        bool | None,
        typer.Option(
            "--letterbox/--no-letterbox",
            help="--task: aspect-preserving resize and pad [detect: on; classify/segment: plain resize].",
        ),
    ] = None,
    rgb: Annotated[
        bool | None, typer.Option("--rgb/--bgr", help="--task: the channel order the model takes [rgb].")
    ] = None,
    det_format: Annotated[
        str | None,
        typer.Option(
            help="--task detect: the output layout, raw (ours) or yolov8 ([N, 4 + classes, "
            "anchors], YOLOv8/YOLO11 exports) [recognised from the output shape]."
        ),
    ] = None,
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
        float | None,
        typer.Option(help="LoadGen server: latency bound at the 99th percentile [15, MLPerf ResNet-50's]."),
    ] = None,
    loadgen_samples: Annotated[
        int | None,
        typer.Option(help="LoadGen: pre-processed samples held on the device [1024, MLPerf ResNet-50's]."),
    ] = None,
    nproc_per_node: Annotated[
        int | None, typer.Option(help="Many devices: one worker per device through torchrun (GPUs: one each).")
    ] = None,
    nnodes: Annotated[int | None, typer.Option(help="Many nodes: how many (with --rdzv-endpoint) [1].")] = None,
    node_rank: Annotated[int | None, typer.Option(help="Many nodes: this node's rank, 0..nnodes-1 [0].")] = None,
    rdzv_endpoint: Annotated[
        str | None, typer.Option(help="Many nodes: HOST:PORT of the rendezvous, the same on every node.")
    ] = None,
) -> None:
    """Benchmark presets end to end (pre-process, infer, post-process), timm/torchvision
    classifiers by name, or your own model.onnx through ONNX Runtime (end to end with --task),
    and write a result."""
    from harness.vision import distributed
    from harness.vision.bench import run_vision, validate
    from harness.vision.request import BackendChoice, Frames, LoadgenOptions, RandomInputs, Task, VisionRequest

    launcher = distributed.Launch(nproc_per_node, nnodes, node_rank, rdzv_endpoint)
    launcher.check()
    req = VisionRequest(
        models=model,
        batch_sizes=parse_sizes(batch_size) if batch_size else None,
        device=device,
        window=Window(warmup, min_duration, min_iters),
        frames=Frames(images, image_size, num_images, preprocess),
        random_inputs=RandomInputs(tuple(input_shape or ()), input_dtype),
        task=Task(task, input_size, mean, std, letterbox, rgb, det_format),
        backend=BackendChoice(tuple(backend or ()), precision, compile_mode, memory_format, tuple(ort_option or ())),
        loadgen=LoadgenOptions(scenario, claim_grade, target_qps, latency_bound_ms, loadgen_samples),
        out_dir=out_dir,
        weights=weights,
        seed=seed,
        assume_watts=assume_watts,
        spec=spec,
        cache_dir=cache_dir,
    )
    if nproc_per_node is not None and not distributed.in_worker():
        validate(req)  # a mistake is one line here, not one traceback per worker
        raise typer.Exit(launcher.run(device, sys.argv[1:], new_result_path(out_dir)))
    sink = distributed.DistContext.from_env() if distributed.in_worker() else None
    show_vision_run(run_vision(req, cli_events(min_duration, min_iters), sink))


@user_errors
def quick(
    device: DeviceOpt = "auto",
    out_dir: OutOpt = RESULTS_DIR,
    min_duration: Annotated[
        float | None, typer.Option(help="Minimum seconds per window [3; --profile ci: 10].")
    ] = None,
    profile: Annotated[
        str, typer.Option(help="default (a first look) or ci (pinned threads, inputs and longer windows for a gate).")
    ] = "default",
) -> None:
    """A quick benchmark of this machine: one classifier, one detector, one segmenter, batch 4."""
    from harness.vision.bench import PROFILES, quick_request, run_vision

    if profile not in PROFILES:
        raise UserError(f"unknown --profile {profile!r}: use {', '.join(PROFILES)}")
    req = quick_request(profile, device, out_dir, min_duration)
    show_vision_run(run_vision(req, cli_events(req.window.min_duration, req.window.min_iters)))
