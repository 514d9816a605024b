"""What `modelpower run` asks for: a request composed from parts that each own their options,
their defaults and their checks.

- `Window` (harness/measure/window.py): warm-up batches and the window's two minimums.
- `Frames`: the frames the pipeline reads and how they are pre-processed (presets, ONNX `--task`).
- `RandomInputs`: the seeded random inputs of an ONNX file run without `--task`.
- `Task`: an ONNX file's task and the conventions that put it in our pipeline.
- `BackendChoice`: backends x precision, the torch.compile mode, the layout, ONNX Runtime's options.
- `LoadgenOptions`: an MLPerf LoadGen scenario and its settings.

A field left None (an empty tuple, a False switch) was not given: its default is the part's own
constant or the runner's, written once, and "does this option apply here?" is decided on what was
given (`given`), never by comparing a value with a default. Each part checks itself against the
kind of run (`Kind`); `VisionRequest.check` runs them all and resolves each model source once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import ClassVar, Literal

from harness.errors import UserError
from harness.inputs import SEED, check_number, split_list
from harness.measure.window import Window
from harness.results.session import RESULTS_DIR
from harness.vision.loadgen import LoadgenConfig
from harness.vision.runner import MEMORY_FORMATS, PRECISIONS, PREPROCESS, RunSettings

Kind = Literal["presets", "onnx-task", "onnx"]  # presets (and timm/torchvision names); ONNX files with/without --task


def given(part) -> list[str]:
    """The flags of `part` (its FLAGS: field -> flag) the user gave, in declaration order."""
    out = []
    for name, flag in part.FLAGS.items():
        value = getattr(part, name)
        if value is not None and value is not False and value != ():
            out.append(flag)
    return out


def _refuse_any(flags: list[str], why: str) -> None:
    if flags:
        raise UserError(f"{flags[0]} {why}")


@dataclass(frozen=True)
class Frames:
    """Camera frames cycled through the pipeline: a folder of images, or generated frames."""

    images: Path | None = None
    image_size: str | None = None  # WxH; None: SIZE
    num_images: int | None = None  # None: COUNT
    preprocess: str | None = None  # None: PREPROCESS[0], our Numba kernels

    FLAGS: ClassVar[dict[str, str]] = {
        "images": "--images",
        "image_size": "--image-size",
        "num_images": "--num-images",
        "preprocess": "--preprocess",
    }

    SIZE: ClassVar[str] = "1920x1080"  # a camera frame
    COUNT: ClassVar[int] = 16

    @property
    def size(self) -> str:
        return self.image_size or self.SIZE

    @property
    def count(self) -> int:
        return self.COUNT if self.num_images is None else self.num_images

    @property
    def pre(self) -> str:
        return self.preprocess or PREPROCESS[0]

    def check(self, kind: Kind) -> None:
        if kind == "onnx":
            _refuse_any(
                given(self),
                "applies to presets and to ONNX files run with --task; without --task an ONNX "
                "file runs on seeded random inputs (--input-dtype)",
            )
        if self.num_images is not None:
            check_number("--num-images", self.num_images, 1)
        if self.pre not in PREPROCESS:
            raise UserError(f"unknown --preprocess {self.pre!r}: use {', '.join(PREPROCESS)}")
        if self.pre == "opencv":
            try:
                import cv2  # noqa: F401
            except ImportError:
                raise UserError("--preprocess opencv needs OpenCV: pip install opencv-python-headless") from None
        if self.images is not None and (self.image_size is not None or self.num_images is not None):
            raise UserError("--image-size and --num-images describe generated frames; --images uses your files")


@dataclass(frozen=True)
class RandomInputs:
    """An ONNX file without --task: seeded random inputs of these shapes and this dtype."""

    input_shape: tuple[str, ...] = ()  # [NAME:]1x3x224x224; empty: the model's
    input_dtype: str | None = None  # None: DTYPE

    FLAGS: ClassVar[dict[str, str]] = {"input_shape": "--input-shape", "input_dtype": "--input-dtype"}

    DTYPE: ClassVar[str] = "float32"

    @property
    def dtype(self) -> str:
        return self.input_dtype or self.DTYPE

    def check(self, kind: Kind) -> None:
        from harness.vision.onnx_model import DTYPES  # onnx and torch load in seconds: the command line builds requests

        if kind == "presets":
            _refuse_any(given(self), "applies to .onnx files; a preset knows its own input and task")
        if kind == "onnx-task":
            _refuse_any(given(self), "describes random inputs; with --task the input is frames (--input-size HxW)")
        if self.dtype not in DTYPES:
            raise UserError(f"--input-dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")


@dataclass(frozen=True)
class Task:
    """An ONNX file in our pipeline: its task and the input conventions it was trained with."""

    task: str | None = None  # classify, detect or segment
    input_size: str | None = None  # HxW the model takes; None: read from the model
    mean: str | None = None  # "m" or "r,g,b" on the 0..255 scale; None: the task's convention
    std: str | None = None
    letterbox: bool | None = None  # None: detection letterboxes, the others resize
    rgb: bool | None = None  # the model's channel order; None: RGB
    det_format: str | None = None  # detect: raw or yolov8; None: recognised from the output

    FLAGS: ClassVar[dict[str, str]] = {
        "task": "--task",
        "input_size": "--input-size",
        "mean": "--mean",
        "std": "--std",
        "letterbox": "--letterbox",
        "rgb": "--rgb/--bgr",
        "det_format": "--det-format",
    }

    def check(self, kind: Kind) -> None:
        if kind == "presets":
            _refuse_any(given(self), "applies to .onnx files; a preset knows its own input and task")
        if self.task is None:
            _refuse_any(given(self), "applies to ONNX files run with --task")
        elif self.det_format is not None and self.task != "detect":
            raise UserError("--det-format applies to --task detect")
        if self.task is not None:
            self.options()

    def options(self):
        """The options as the ONNX loader takes them (`onnx_model.TaskOptions`); a UserError for a bad value."""
        from harness.vision.onnx_model import TaskOptions  # (as above)

        hw = None
        if self.input_size is not None:
            if not re.fullmatch(r"[0-9]{1,6}x[0-9]{1,6}", self.input_size.lower()):
                raise UserError(f"--input-size must look like 640x640 (height x width), got {self.input_size!r}")
            h, w = (int(v) for v in self.input_size.lower().split("x"))
            if not (1 <= h <= 16384 and 1 <= w <= 16384):
                raise UserError(f"--input-size must be 1..16384 on each side, got {self.input_size!r}")
            hw = (h, w)
        return TaskOptions(
            self.task,
            hw,
            _channels("--mean", self.mean),
            _channels("--std", self.std, positive=True),
            self.letterbox,
            True if self.rgb is None else self.rgb,
            self.det_format,
        )


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


@dataclass(frozen=True)
class BackendChoice:
    """Which backends run each preset, at which precision, and their settings."""

    backends: tuple[str, ...] = ()  # names, or comma lists; empty: BACKEND
    precision: str | None = None  # None: RunSettings' default (fp32)
    compile_mode: str | None = None  # None: RunSettings' default (auto)
    memory_format: str | None = None  # None: RunSettings' default (auto)
    ort_options: tuple[str, ...] = ()  # KEY=VALUE provider options (CUDA/TensorRT)
    combos: tuple[tuple[str, str], ...] | None = None  # explicit (backend, precision) pairs (`modelpower backends`)

    FLAGS: ClassVar[dict[str, str]] = {
        "backends": "--backend",
        "precision": "--precision",
        "compile_mode": "--compile-mode",
        "memory_format": "--memory-format",
        "ort_options": "--ort-option",
    }

    BACKEND: ClassVar[str] = "torch"

    @property
    def prec(self) -> str:
        return self.precision or RunSettings.precision

    @property
    def mode(self) -> str:
        return self.compile_mode or RunSettings.compile_mode

    @property
    def layout(self) -> str:
        return self.memory_format or RunSettings.memory_format

    @cached_property
    def pairs(self) -> list[tuple[str, str]]:
        """(backend, precision) pairs to measure, in order; unknown names refused."""
        from harness.backends import BACKENDS  # (as above)

        if self.combos is not None:
            return list(self.combos)
        if self.prec not in PRECISIONS:
            raise UserError(f"unknown precision {self.prec!r}: use {', '.join(PRECISIONS)}")
        names = split_list(self.backends, "--backend") or [self.BACKEND]
        for b in names:
            if b not in BACKENDS:
                raise UserError(
                    f"unknown backend {b!r}: use {', '.join(BACKENDS)} (`modelpower backends` says which run here)"
                )
        return [(b, self.prec) for b in dict.fromkeys(names)]

    @property
    def file_engine(self) -> str:
        """The engine an ONNX file runs on: onnxruntime unless --backend openvino."""
        return "openvino" if set(split_list(self.backends, "--backend")) == {"openvino"} else "onnxruntime"

    @cached_property
    def ort(self) -> dict[str, str]:
        """The ONNX Runtime provider options, parsed once."""
        return parse_ort_options(self.ort_options)

    def check(self, kind: Kind) -> None:
        from harness.backends.torch_compile import MODES  # (as above)

        onnx = kind != "presets"
        if onnx:
            named = set(split_list(self.backends, "--backend"))
            if self.combos is None and named not in (set(), {"onnxruntime"}, {"openvino"}):
                raise UserError(
                    "ONNX files run through one engine, onnxruntime (the default) or openvino: "
                    "--backend onnxruntime or --backend openvino"
                )
            if self.precision is not None:
                raise UserError(
                    "--precision applies to presets; an ONNX file runs at the precision its graph computes in"
                )
        used = {b for b, _ in self.pairs}
        if self.compile_mode is not None and "torch-compile" not in used:
            raise UserError("--compile-mode applies to --backend torch-compile")
        if self.memory_format is not None and (onnx or not any(b.startswith("torch") for b in used)):
            raise UserError("--memory-format applies to presets on the torch backends (ONNX Runtime takes NCHW)")
        if self.ort_options and (onnx or not any(b.startswith("onnxruntime") for b in used)):
            raise UserError("--ort-option applies to presets run with --backend onnxruntime or onnxruntime-trt")
        if self.mode not in MODES:
            raise UserError(f"unknown --compile-mode {self.mode!r}: use {', '.join(MODES)}")
        _ = self.ort
        if self.layout not in MEMORY_FORMATS:
            raise UserError(f"unknown --memory-format {self.layout!r}: use {', '.join(MEMORY_FORMATS)}")


def parse_ort_options(items: tuple[str, ...] | list[str]) -> dict[str, str]:
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


@dataclass(frozen=True)
class LoadgenOptions:
    """Each point as an MLPerf LoadGen test; the settings' defaults are LoadgenConfig's."""

    scenario: str | None = None  # offline, server, singlestream, multistream; None: no LoadGen
    claim_grade: bool = False
    target_qps: float | None = None
    latency_bound_ms: float | None = None
    sample_count: int | None = None

    FLAGS: ClassVar[dict[str, str]] = {
        "scenario": "--scenario",
        "claim_grade": "--claim-grade",
        "target_qps": "--target-qps",
        "latency_bound_ms": "--latency-bound-ms",
        "sample_count": "--loadgen-samples",
    }

    def config(self, window: Window) -> LoadgenConfig | None:
        """The LoadGen settings of this run (None: no --scenario), the window's minimum duration included."""
        if self.scenario is None:
            return None
        settings = {"latency_bound_ms": self.latency_bound_ms, "sample_count": self.sample_count}
        return LoadgenConfig(
            self.scenario.strip().lower(),
            window.min_duration,
            self.claim_grade,
            self.target_qps,
            **{k: v for k, v in settings.items() if v is not None},
        )

    def check(self, kind: Kind, window: Window, batch_sizes: list[int]) -> None:
        from harness.vision.loadgen import import_loadgen  # (as above)

        if self.scenario is None:
            if given(self):
                raise UserError(
                    "--claim-grade, --target-qps, --latency-bound-ms and --loadgen-samples apply to "
                    "LoadGen runs: add --scenario"
                )
            return
        server_only = {"--target-qps", "--latency-bound-ms"}
        if self.scenario.strip().lower() != "server" and server_only & set(given(self)):
            raise UserError("--target-qps and --latency-bound-ms apply to --scenario server")
        if kind != "presets":
            raise UserError("--scenario runs presets; ONNX files run without LoadGen")
        import_loadgen()
        cfg = self.config(window)
        for bs in batch_sizes:
            cfg.check(bs)


@dataclass
class VisionRequest:
    """Everything `modelpower run` (and `quick`, `backends PRESET`) was asked, in parts."""

    models: list[str]  # preset names, timm:NAME / torchvision:NAME, or .onnx files
    batch_sizes: list[int] | None = None  # None: 1 (an ONNX file: its fixed batch, or --input-shape's)
    device: str = "auto"
    window: Window = field(default_factory=Window)
    frames: Frames = field(default_factory=Frames)
    random_inputs: RandomInputs = field(default_factory=RandomInputs)
    task: Task = field(default_factory=Task)
    backend: BackendChoice = field(default_factory=BackendChoice)
    loadgen: LoadgenOptions = field(default_factory=LoadgenOptions)
    out_dir: Path = RESULTS_DIR
    weights: Path | None = None
    seed: int = SEED
    assume_watts: float | None = None
    spec: Path | None = None
    cache_dir: Path | None = None  # None: RunSettings' default
    keep_going: bool = False  # a failing point becomes a note (the `backends` comparison)
    threads: int | None = None  # pin torch's and Numba's CPU threads (None: their defaults)
    profile: str | None = None  # `quick --profile`: recorded in the result

    @property
    def kind(self) -> Kind:
        if not any(m.endswith(".onnx") for m in self.models):
            return "presets"
        return "onnx-task" if self.task.task is not None else "onnx"

    def check(self) -> None:
        """Every part against this kind of run, and the run's own numbers; a UserError for the first mistake."""
        if self.batch_sizes is not None and not self.batch_sizes:
            raise UserError("no batch size given")
        onnx = [m for m in self.models if m.endswith(".onnx")]
        if onnx and len(onnx) != len(self.models):
            raise UserError("run presets and ONNX files in separate commands")
        kind = self.kind
        self.window.check()
        check_number("--seed", self.seed, 0, 2**32 - 1)
        if self.threads is not None:
            check_number("threads", self.threads, 1, 4096)
        if self.assume_watts is not None:
            check_number("--assume-watts", self.assume_watts, 0, above=True)
        self.random_inputs.check(kind)
        self.task.check(kind)
        self.backend.check(kind)
        if self.weights is not None and kind != "presets":
            raise UserError("--weights applies to presets; an ONNX file holds its weights")
        self.frames.check(kind)
        if self.weights is not None and len(self.models) != 1:
            raise UserError("--weights applies to one model; name exactly one")
        self.loadgen.check(kind, self.window, self.batch_sizes or [1])
