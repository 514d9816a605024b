"""Commands that look at what is here: `devices`, `models`, `backends`."""

from __future__ import annotations

import fnmatch
import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from harness.cli.common import CacheOpt, DeviceOpt, cli_events, out, user_errors
from harness.cli.run import show_vision_run
from harness.errors import UserError
from harness.inputs import parse_sizes
from harness.machine.specs import match_spec
from harness.results.session import RESULTS_DIR
from models.llm.config import LLM_CONFIGS
from models.llm.flops import decode_flops


@user_errors
def devices(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show this machine's CPU and GPUs, each matched to its nameplate spec row."""
    from harness.machine.devices import detect_machine

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
            str(gpu.index),
            gpu.name,
            f"{gpu.memory_gib} GiB",
            gpu.driver or "-",
            gpu.cuda_version or "-",
            f"{gpu.power_limit_w:.0f} W" if gpu.power_limit_w else "-",
            f"{gpu.sm_clock_mhz:.0f}/{gpu.max_sm_clock_mhz:.0f} MHz" if gpu.max_sm_clock_mhz else "-",
            gpu.spec_row or "no row: MFU unknown",
        )
    out.print(g)
    for gpu in m.gpus:
        row = match_spec(gpu.name)
        if row:
            peaks = ", ".join(f"{k} {v:g}" for k, v in row.peaks.items())
            mark = f" (unconfirmed: {', '.join(row.unconfirmed)})" if row.unconfirmed else ""
            out.print(f"GPU {gpu.index} dense nameplate TFLOPS: {peaks}{mark}\n  source: {row.source}")


@user_errors
def models(
    pattern: Annotated[
        str,
        typer.Argument(
            help="Glob on preset names, e.g. 'steel-*'; 'timm:*res*' or 'torchvision:*' lists those architectures."
        ),
    ] = "*",
) -> None:
    """List the registered model presets with their input, parameters and GFLOPs per sample (and
    the timm and torchvision classifiers `modelpower run` builds by name)."""
    from harness.measure.flops import param_count, preset_flops_per_sample
    from models import list_presets
    from models.vision.zoo import is_zoo_name

    if is_zoo_name(pattern):
        _zoo_models(pattern)
        return
    presets = list_presets(pattern)
    llms = [c for n, c in LLM_CONFIGS.items() if fnmatch.fnmatch(n, pattern)]
    if not presets and not llms:
        raise UserError(f"no preset matches {pattern!r}")
    if presets:
        t = Table(title="vision presets (weights: seeded random init unless --weights)")
        for col in ("name", "industry", "task", "architecture", "input WxH", "classes", "params", "GFLOPs"):
            t.add_column(col, justify="right" if col in ("classes", "params", "GFLOPs") else "left")
        for p in presets:
            flops = preset_flops_per_sample(p.builder, p.num_classes, p.input_hw)
            t.add_row(
                p.name,
                p.industry,
                p.task,
                p.arch,
                f"{p.input_hw[1]}x{p.input_hw[0]}",
                str(p.num_classes),
                f"{param_count(p.builder, p.num_classes) / 1e6:.1f}M",
                f"{flops / 1e9:.2f}",
            )
        out.print(t)
        out.print("GFLOPs: per sample, one multiply-add = 2 FLOPs, counted from the graph (conv + matmul).")
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
    if pattern == "*":
        out.print(
            "Also any timm or torchvision classifier by name, e.g. `modelpower run timm:resnet18`: "
            "`modelpower models 'timm:*'` lists them."
        )


ZOO_DETAIL_MAX = 12  # above this many matches, names only (counting FLOPs builds each model)


def _zoo_models(pattern: str) -> None:
    """`modelpower models 'timm:GLOB'`: the matching architectures; with few matches, their input,
    parameters and GFLOPs too."""
    from harness.measure.flops import param_count, preset_flops_per_sample
    from models import get_preset
    from models.vision.zoo import list_names

    source, _, glob = pattern.partition(":")
    glob = glob or "*"
    names = list_names(source, glob)
    if not names:
        raise UserError(f"no {source} architecture matches {glob!r}")
    if len(names) > ZOO_DETAIL_MAX:
        out.print(f"{len(names)} {source} architectures match {glob!r} (narrow the glob to see inputs and GFLOPs):")
        out.print(", ".join(f"{source}:{n}" for n in names), soft_wrap=True)
        return
    t = Table(title=f"{source} classifiers (seeded random init unless --weights; 1000 classes)")
    for col in ("name", "input WxH", "params", "GFLOPs"):
        t.add_column(col, justify="left" if col == "name" else "right")
    for n in names:
        p = get_preset(f"{source}:{n}")
        flops = preset_flops_per_sample(p.builder, p.num_classes, p.input_hw)
        params = param_count(p.builder, p.num_classes)
        t.add_row(p.name, f"{p.input_hw[1]}x{p.input_hw[0]}", f"{params / 1e6:.1f}M", f"{flops / 1e9:.2f}")
    out.print(t)


@user_errors
def backends(
    model: Annotated[
        str | None, typer.Argument(help="A preset: run it through every backend x precision available here.")
    ] = None,
    device: DeviceOpt = "auto",
    batch_size: Annotated[
        list[str] | None, typer.Option("--batch-size", "-b", help="Batch size; a list sweeps: -b 1,8,32 [8].")
    ] = None,
    min_duration: Annotated[float | None, typer.Option(help="Minimum seconds per measurement window [3].")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for the result JSON [results].")] = None,
    cache_dir: CacheOpt = None,
) -> None:
    """List the backends and whether they run here; with a preset, compare them all in one table."""
    from harness.backends import BACKENDS, check_backend
    from harness.cli.tables import backends_comparison
    from harness.machine.devices import resolve_device
    from harness.vision.bench import COMPARISON, run_vision
    from harness.vision.request import BackendChoice, VisionRequest

    if model is None and (batch_size or min_duration is not None or out_dir or cache_dir):
        raise UserError("-b, --min-duration, --out and --cache-dir apply to a comparison: name a preset")
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
    window = COMPARISON["window"]
    if min_duration is not None:
        window = replace(window, min_duration=min_duration)
    sizes = parse_sizes(batch_size) if batch_size else [COMPARISON["batch"]]
    req = VisionRequest(
        [model],
        sizes,
        device,
        window=window,
        backend=BackendChoice(combos=tuple(combos)),
        out_dir=out_dir or RESULTS_DIR,
        cache_dir=cache_dir,
        keep_going=True,
    )
    session = run_vision(req, cli_events(window.min_duration, window.min_iters))
    show_vision_run(session)
    out.print(backends_comparison(model, dev, session.result.points))
