"""`modelpower run` and `modelpower quick`: the vision benchmark (harness/vision/bench.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import (
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
)  # fmt: skip
from harness.errors import UserError
from harness.results.session import ResultSession


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
    compile_mode: Annotated[
        str,
        typer.Option(
            help="torch-compile mode: auto (on a GPU the fastest of reduce-overhead and default that "
            "agrees; on the CPU default), default, reduce-overhead, max-autotune."
        ),
    ] = "auto",
    memory_format: Annotated[
        str,
        typer.Option(
            help="The model's layout on the torch backends: auto (channels_last for convolution models), "
            "channels_last or contiguous."
        ),
    ] = "auto",
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
    input_dtype: Annotated[str, typer.Option(help="ONNX files: input dtype (float32, float16, int64, ...).")] = (
        "float32"
    ),
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
    """Benchmark presets end to end (pre-process, infer, post-process), timm/torchvision
    classifiers by name, or your own model.onnx through ONNX Runtime (end to end with --task),
    and write a result."""
    import sys

    from harness.inputs import parse_sizes
    from harness.results.session import new_result_path
    from harness.vision import distributed
    from harness.vision.bench import VisionRequest, run_vision, validate

    if nproc_per_node is None and (nnodes != 1 or node_rank != 0 or rdzv_endpoint is not None):
        raise UserError("--nnodes, --node-rank and --rdzv-endpoint apply to torchrun runs: add --nproc-per-node")
    loadgen = None
    if scenario is not None:
        from harness.vision.loadgen import LoadgenConfig

        loadgen = LoadgenConfig(scenario.strip().lower(), min_duration, claim_grade, target_qps, latency_bound_ms,
                                loadgen_samples)  # fmt: skip
    elif claim_grade or target_qps is not None or loadgen_samples != 1024 or latency_bound_ms != 15.0:
        raise UserError("--claim-grade, --target-qps, --latency-bound-ms and --loadgen-samples apply to LoadGen runs: "
                        "add --scenario")  # fmt: skip
    if scenario is not None and scenario.strip().lower() != "server" and (target_qps is not None
                                                                         or latency_bound_ms != 15.0):  # fmt: skip
        raise UserError("--target-qps and --latency-bound-ms apply to --scenario server")
    req = VisionRequest(
        models=model, batch_sizes=parse_sizes(batch_size) if batch_size else None, device=device, precision=precision,
        backends=backend,
        warmup=warmup, min_duration=min_duration, min_iters=min_iters, out_dir=out_dir, weights=weights,
        images=images, image_size=image_size, num_images=num_images, seed=seed, preprocess=preprocess,
        assume_watts=assume_watts, spec=spec, compile_mode=compile_mode, cache_dir=cache_dir,
        memory_format=memory_format, ort_options=ort_option or [],
        input_shape=input_shape or [], input_dtype=input_dtype, loadgen=loadgen, task=task, input_size=input_size,
        mean=mean, std=std, letterbox=letterbox, rgb=rgb, det_format=det_format,
    )  # fmt: skip
    if nproc_per_node is not None and not distributed.in_worker():
        validate(req)  # a mistake is one line here, not one traceback per worker
        distributed.check_launch(nproc_per_node, nnodes, node_rank, rdzv_endpoint, device)
        path = new_result_path(out_dir)
        raise typer.Exit(distributed.launch(nproc_per_node, nnodes, node_rank, rdzv_endpoint, sys.argv[1:], path))
    sink = distributed.DistContext.from_env() if distributed.in_worker() else None
    show_vision_run(run_vision(req, cli_events(min_duration, min_iters), sink))


@user_errors
def quick(
    device: DeviceOpt = "auto",
    out_dir: OutOpt = Path("results"),
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
    show_vision_run(run_vision(req, cli_events(req.min_duration, req.min_iters)))
