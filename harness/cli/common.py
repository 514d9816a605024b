"""What every command shares: the consoles, one-line user errors, the common options, progress.

Commands parse their flags into a request, hand it to the benchmark module that runs it
(harness/vision/bench.py, harness/llm/bench.py, ...) and print what comes back; they hold no orchestration.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, ConsoleDimensions
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from harness.errors import UserError, strip_control
from harness.results.session import Events, ResultSession, Tick, exit_code

LOG_WIDTH = 160  # logs and pipes without COLUMNS: wide enough for most tables whole (tables.py blocks the rest)
clean = strip_control  # text from files and flags without terminal control characters


class SafeConsole(Console):
    """A console for text that may come from untrusted files: markup and highlighting off by
    default (a model named "[/b]" is printed as is), control characters removed from every
    string it renders, table cells and titles included.

    Without a `width` its width is read at each print: COLUMNS when set (a terminal or not), else the
    terminal's width, or LOG_WIDTH when its file is not a terminal (CI logs, `| tee`)."""

    def __init__(self, **kwargs):
        super().__init__(markup=False, highlight=False, **kwargs)
        if kwargs.get("width") is None:
            self._width = None  # rich read COLUMNS once; read it at each print instead

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)  # the width given, else COLUMNS, else any standard stream's terminal
        if self._width is None and not os.environ.get("COLUMNS", "").isdigit() and not _isatty(self.file):
            return ConsoleDimensions(LOG_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)

    def render_str(self, text: str, **kwargs):
        return super().render_str(clean(text), **kwargs)


def _isatty(file) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):  # a closed or bare stream
        return False


out = SafeConsole()
err = SafeConsole(stderr=True)


def user_errors(fn):
    """Turn a UserError into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            line = " ".join(str(e).split())  # one line, whatever the message holds
            err.print(f"modelpower: error: {line}", soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as e:  # Ctrl-C (or SIGTERM, SIGHUP) before any point finished
            err.print("interrupted")
            raise typer.Exit(exit_code(e)) from None

    return wrapper


def given(**options) -> dict:
    """The options the user gave (not None): what a command passes on, so that every other field
    keeps the one default its request part declares."""
    return {k: v for k, v in options.items() if v is not None}


def say(text: str) -> None:
    """A line of news on stderr (the tables go to stdout)."""
    err.print(text)


def cli_events(min_duration: float, min_iters: int) -> Events:
    """Events drawn on the terminal: notes on stderr, a progress bar per point whose windows fill it."""

    @contextmanager
    def track(label: str, windows: int, unit: str) -> Iterator[Tick]:
        columns = (
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TextColumn("{task.fields[info]}", markup=False),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task(label, total=float(windows), info="preparing")
            phases: list[str] = []

            def tick(phase: str, elapsed: float = 0.0, n: int = 0) -> None:
                if n == 0:
                    bar.update(task, info=phase)
                    return
                if phase not in phases:
                    phases.append(phase)
                frac = min(1.0, elapsed / max(min_duration, 1e-9), n / min_iters)  # a window needs both
                bar.update(task, completed=phases.index(phase) + frac, info=f"{phase}: {n} {unit}, {elapsed:.1f}s")

            yield tick

    return Events(note=say, track=track)


NOTHING_MEASURED = 3  # exit codes (docs/errors.md): 0 done, 1 a gate failed, 2 a user mistake, 3 this


def finish_run(session: ResultSession) -> None:
    """The last lines of a run: where the result is; exit 130 (Ctrl-C), 143 (SIGTERM) or 129
    (SIGHUP) if a signal cut it short; exit 3 (NOTHING_MEASURED) if no point could be measured."""
    out.print(f"result written to {session.path}")
    if session.interrupted:
        raise typer.Exit(exit_code(session.interrupted))
    r = session.result
    measured = [p for p in r.points if getattr(p, "status", "ok") == "ok"]
    if not measured and (r.failed or r.points):  # every point out of memory (or failed): say so
        err.print("modelpower: error: no point could be measured (see above)", soft_wrap=True)
        raise typer.Exit(NOTHING_MEASURED)


BatchOpt = Annotated[list[str] | None, typer.Option("--batch-size", "-b", help="Batch size; a list sweeps: -b 1,8,32.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
PrecisionOpt = Annotated[
    str | None, typer.Option(help="fp32, fp16, bf16 (torch backends, openvino) or int8 (onnxruntime, openvino) [fp32].")
]
CacheOpt = Annotated[
    Path | None, typer.Option(help="Folder for exported ONNX files and TensorRT engines [~/.cache/modelpower].")
]
WarmupOpt = Annotated[int, typer.Option(help="Warm-up batches, excluded from every window.")]
DurationOpt = Annotated[float, typer.Option(help="Minimum seconds per measurement window.")]
ItersOpt = Annotated[int, typer.Option(help="Minimum batches per measurement window.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Folder for the result JSON.")]
ImagesOpt = Annotated[Path | None, typer.Option(help="Folder of .jpg/.png images to use instead of generated ones.")]
SizeOpt = Annotated[str | None, typer.Option(help="Generated image size WxH (a camera frame) [1920x1080].")]
NumImagesOpt = Annotated[int | None, typer.Option(help="How many distinct generated images to cycle [16].")]
SeedOpt = Annotated[int, typer.Option(help="Seed for random weights and generated images.")]
SpecOpt = Annotated[
    Path | None, typer.Option(help="A spec TOML ([[device]] rows) adding or overriding nameplate peaks.")
]
AssumeWattsOpt = Annotated[
    float | None,
    typer.Option(help="No energy counter? Estimate energy as these watts x time; labelled an estimate, not measured."),
]
PromptsOpt = Annotated[
    Path | None,
    typer.Option(
        help='Prompts file: text (a prompt per line), .jsonl ({"prompt": ..., "output_len": ...}), ShareGPT .json, '
        "or lines of token ids."
    ),
]
