"""The result schema (one versioned module), atomic writing and validated reading.

A result file is one JSON document per `modelpower run`: the run's provenance and one `Point` per
model x batch size measured. It is rewritten after every point, so an interrupted run keeps what it
finished (status "incomplete").
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
import types
import typing
import uuid
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from harness.errors import UserError, strip_control
from harness.inputs import read_json
from harness.measure.stats import LatencyStats

SCHEMA_VERSION = 1


@dataclass
class Point:
    """One measurement: a model at one batch size, precision and device."""

    model: str
    task: str
    industry: str
    arch: str
    input_hw: list[int]
    num_classes: int
    weights: dict  # {"kind": "random-init", "seed": N} or {"kind": "file", "path", "sha256"}
    device: str
    device_name: str
    backend: str
    preprocess: str  # data path: numba, numba-cuda (kernels on the GPU), opencv or torchvision
    precision: str
    batch_size: int
    params: int
    flops_per_sample: float  # FLOPs (multiply-add = 2) of one forward pass on one sample
    load_s: float  # build + weights + move to device
    first_call_s: float  # first batch through the whole pipeline (includes JIT of kernels)
    warmup_iters: int
    # staged: each step timed alone with the device synchronized between steps (per batch); keys
    # are the data path's steps in order (see harness/vision/runner.py)
    staged: dict[str, LatencyStats]
    staged_window_s: float
    # end to end: the pipeline as it runs, pre-processing of batch i+1 overlapping batch i
    e2e: LatencyStats  # per batch: start of its pre-processing to end of its post-processing
    window_s: float
    iterations: int
    samples: int
    throughput_sps: float  # samples completed in the end-to-end window / window wall time
    delivered_tflops: float  # flops_per_sample x throughput_sps / 1e12
    infer_tflops: float  # flops_per_sample x batch / mean staged inference time / 1e12
    input_source: str
    pre_threads_overlapped: int  # Numba threads of the pre-processing worker in the e2e window
    output_check: dict  # {"checked_batches": n, "nan_or_inf": bool, ...task-specific counts}
    flags: list[str] = field(default_factory=list)  # high_cov_e2e, nan_or_inf_outputs, throttled, ...
    # utilisation and energy, all over the end-to-end window (harness/measure/metrics.py, harness/measure/energy.py)
    pflops_equivalent: float | None = None  # delivered FLOPS / 1e15
    mfu: float | None = None  # delivered / dense nameplate peak; None = unknown
    mfu_peak_tflops: float | None = None  # the denominator
    mfu_precision: str | None = None  # the precision of the math the denominator is for (fp32 convs on CUDA: tf32)
    mfu_peak_source: str | None = None  # where the denominator comes from, or why it is unknown
    # EnergyReading: measured (True only when a counter read it), joules, scope, method, estimate (True:
    # --assume-watts, measured False; the figures below are then that estimate's, flagged energy_estimated),
    # idle_w, clocks
    energy: dict | None = None
    joules_per_sample: float | None = None
    samples_per_joule: float | None = None
    joules_per_pflop: float | None = None  # energy / (useful FLOPs / 1e15)
    pflops_per_kw: float | None = None
    # backend: compile/export/engine-build time apart from everything else, and what was built
    compile_s: float | None = None
    backend_info: dict | None = None
    agreement: dict | None = None  # vs an independent fp32 execution, same batch (measure/agreement.py)
    memory_format: str | None = None  # the model's layout: channels_last (NHWC) or contiguous (NCHW)
    # MLPerf LoadGen run (harness/vision/loadgen.py): scenario, settings, LoadGen's verdict and summary
    loadgen: dict | None = None
    # many devices (torchrun, harness/vision/distributed.py): the rank that measured this point and the
    # world size; the aggregate row (aggregate=True, rank None) sums the ranks' rows before it
    rank: int | None = None
    world_size: int | None = None
    aggregate: bool = False


@dataclass
class LLMPoint:
    """One LLM measurement: a model at one batch size, prompt length and output length.

    Definitions (docs/measurement.md, "LLM metrics"): TTFT = start of prefill to the first token
    sampled; inter-token latency = gaps between consecutive tokens of a sequence; TPOT = (last token
    - first token) / (output_len - 1); throughputs = tokens completed in the window / window time.
    """

    kind: str  # "llm"
    model: str
    source: dict  # {"kind": "random-init", "seed"} or {"kind": "checkpoint", "path"}
    device: str
    device_name: str
    precision: str
    batch_size: int
    prompt_len: int
    output_len: int
    sampling: dict
    # "ok"; "skipped": estimated not to fit, not run (detail "would not fit (estimated: ...)", no figures);
    # "oom": it ran and an allocation failed (no figures)
    status: str
    params: int
    compiled: bool
    compile_s: float | None = None  # warm-up generation incl. torch.compile, apart from the window
    load_s: float | None = None
    runs: int = 0
    window_s: float | None = None
    ttft: LatencyStats | None = None
    itl: LatencyStats | None = None
    tpot_ms: float | None = None
    prefill_tokens_per_s: float | None = None
    decode_tokens_per_s: float | None = None
    total_tokens_per_s: float | None = None
    output_tokens_per_s: float | None = None
    requests_per_s: float | None = None
    prefill_flops_per_token: float | None = None
    decode_flops_per_token: float | None = None
    prefill_tflops: float | None = None
    prefill_mfu: float | None = None
    mfu_peak_tflops: float | None = None
    mfu_peak_source: str | None = None
    decode_bytes_per_step: float | None = None
    decode_gbs: float | None = None
    decode_mbu: float | None = None
    mbu_bandwidth_gbs: float | None = None
    # this point's own peak: GPU torch max_memory_allocated since its warm-up; host: the process's RSS
    # sampled over its timed window (the scope says which, and how; weights and all else resident count)
    peak_memory_gib: float | None = None
    peak_memory_scope: str | None = None
    energy: dict | None = None  # as Point.energy: measured False and estimate True for --assume-watts
    joules_per_token: float | None = None  # measured, or the estimate (flag energy_estimated)
    joules_per_pflop: float | None = None
    tokens_checked: dict | None = None  # valid token ids, all rows generated out_len tokens
    detail: str | None = None  # status "skipped": the estimate; "oom": the allocation that failed
    prompt_tokens_mean: float | None = None  # real prompt tokens per sequence (prompt files vary)
    output_tokens_mean: float | None = None  # tokens each sequence asked for, on average
    padding: str | None = None  # how prompts of different lengths shared a batch, if they did
    outputs: list[dict] | None = None  # --save-outputs: generated ids (and text) per prompt
    engine: str = "modelpower"  # whose generation loop ran: ours, or the peer ("transformers")
    compute_precision: str | None = None  # matmuls and KV cache (int8 weight-only computes in bf16)
    weights: str | None = None  # how the weights were stored when not in `precision` (int8 weight-only)
    agreement: dict | None = None  # int8: greedy tokens and first-step logits against the bf16 model
    kv_cache_bytes: int | None = None  # the static KV cache allocated for the point
    decode_step: str | None = None  # eager, or one CUDA graph per shape (and why not, if capture failed)
    timestamps: str | None = None  # how per-token times were taken (host clock, or CUDA events)
    engine_build: dict | None = None  # a peer engine's version and build (llama.cpp: its flags and threads)
    served: dict | None = None  # `serve-bench`: the load, failures by class, goodput, E2E/TPOT, the endpoint
    flags: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    schema_version: int
    run_id: str
    status: str  # "running", "complete" or "incomplete"
    started_at: str
    ended_at: str | None
    command: str
    config: dict
    provenance: dict
    points: list[Point | LLMPoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # points that could not be measured: {"label", "model", "backend", "precision", "batch_size",
    # "kind": "skipped" (estimated not to fit, not run), "oom" (an allocation failed) or "error" (keep-going),
    # "detail"}
    failed: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def write_atomic(path: Path, text: str) -> None:
    """Write a file atomically: a temp file in the same folder, fsync, then rename over the target,
    so a reader (or a crash) never sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as a plainly written file, not mkstemp's 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):  # a full disk, a folder gone read-only: one line, the old file kept
            raise UserError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def _finite(value, where: str, bad: list[str]):
    """`value` with every NaN or infinity replaced by null; their paths are added to `bad`."""
    if isinstance(value, float) and not math.isfinite(value):
        bad.append(where)
        return None
    if isinstance(value, dict):
        return {k: _finite(v, f"{where}.{k}" if where else str(k), bad) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v, f"{where}[{i}]", bad) for i, v in enumerate(value)]
    return value


def strict_json(doc: dict) -> str:
    """Standard JSON (no NaN or Infinity tokens, which strict parsers reject): a number that is not
    finite is written as null, and a note in `notes` names each such field."""
    bad: list[str] = []
    clean = _finite(doc, "", bad)
    if bad:
        clean["notes"] = [*clean.get("notes", []), f"not a finite number, written as null: {', '.join(bad)}"]
    return json.dumps(clean, indent=2, allow_nan=False) + "\n"


RUNNING = '"status": "running"'
RUNNING_PADDED = '"status":    "running"'  # JSON whitespace: as many bytes as '"status": "incomplete"'
STOPPED = '"status": "incomplete"'


def write_result(result: RunResult, path: Path) -> None:
    """The result file, written atomically, as standard JSON. A running result's status is written
    with room to turn "incomplete" in place (`mark_incomplete_in_place`), so that a run whose last
    write fails (a full disk) never leaves a file that says it is still running."""
    text = strict_json(result.to_dict())
    if result.status == "running":
        text = text.replace(RUNNING, RUNNING_PADDED, 1)
    write_atomic(path, text)


def mark_incomplete_in_place(path: Path) -> bool:
    """Turn a written result's status from running to incomplete by overwriting its own bytes (the
    same length: nothing is allocated, so it works on a full disk). True if the file now says so."""
    try:
        with open(path, "r+b") as f:
            head = f.read(4096)
            at = head.find(RUNNING_PADDED.encode())
            if at < 0:
                return False
            f.seek(at)
            f.write(STOPPED.encode())
            f.flush()
            os.fsync(f.fileno())
        return True
    except OSError:
        return False


def write_record(out_dir: Path, prefix: str, kind: str, started: str, body: dict) -> Path:
    """A `peak` or `kernels` record (PREFIX-DATE-TIME-ID.json: two runs in one second keep both):
    kind, version, times, the measurements and provenance; returns its path."""
    # provenance imports torch and numba.cuda (~10 s on a busy 2-core machine): the schema, which the
    # command line loads for every command, --help included, stays free of them
    from harness.machine.provenance import now_iso, provenance

    doc = {"kind": kind, "version": 1, "started_at": started, "ended_at": now_iso(), **body, "provenance": provenance()}
    path = out_dir / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{new_run_id()[:6]}.json"
    write_atomic(path, strict_json(doc))
    return path


def json_kind(path: Path) -> str | None:
    """The `kind` of a modelpower JSON file (modelpower-peak, modelpower-kernel-bench); None for a
    run result."""
    doc = read_json(path)
    kind = doc.get("kind") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) else None


def type_ok(value, tp) -> bool:
    """Does a JSON value fit a field's annotation? Every number modelpower records is a finite,
    non-negative measurement or count: NaN, infinity and negatives are refused; a float may be
    null (a value that was not finite is written as null); bools are not numbers."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(type_ok(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp is float:  # null only where the annotation says `| None`
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if tp in (str, bool):
        return isinstance(value, tp)
    if tp is dict or origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if tp is list or origin is list:
        simple = args and args[0] in (int, float, str, bool, dict)
        return isinstance(value, list) and (not simple or all(type_ok(v, args[0]) for v in value))
    if dataclasses.is_dataclass(tp):
        return isinstance(value, dict)
    return True


def _build(cls, d: dict, where: str):
    """A dataclass from a JSON object, every field checked against its annotation first."""
    if not isinstance(d, dict):
        raise UserError(f"{where}: expected an object, got {type(d).__name__}")
    names = {f.name for f in fields(cls)}
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    missing = required - set(d)
    if missing:
        raise UserError(f"{where}: missing field(s) {', '.join(sorted(missing))}")
    hints = typing.get_type_hints(cls)
    for k in names & set(d):
        if not type_ok(d[k], hints[k]):
            raise UserError(f"{where}.{k}: expected {_type_name(hints[k])} (finite, not negative), got {d[k]!r:.40}")
    return cls(**{k: v for k, v in d.items() if k in names})


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


# the nested objects readers use, and the type of each key they read
NESTED = {
    "energy": {"method": str, "scope": str, "estimate": bool, "joules": float, "window_s": float},
    "loadgen": {"scenario": str, "result": str},
}


def _check_nested(p, where: str) -> None:
    for name, keys in NESTED.items():
        obj = getattr(p, name, None) or {}
        for k, tp in keys.items():
            if k in obj and not type_ok(obj[k], tp | None):
                raise UserError(f"{where}.{name}.{k}: expected {tp.__name__}, got {type(obj[k]).__name__}")


def _check_provenance(prov: dict, where: str) -> None:
    """The parts of `provenance` a report shows: machine.cpu an object, machine.gpus a list of them."""
    m = prov.get("machine", {})
    ok = isinstance(m, dict) and isinstance(m.get("cpu", {}), dict) and isinstance(prov.get("versions", {}), dict)
    gpus = m.get("gpus", []) if isinstance(m, dict) else None
    if not ok or not isinstance(gpus, list) or not all(isinstance(g, dict) for g in gpus):
        raise UserError(f"{where}: provenance.machine must hold a cpu object and a list of gpus")


def point_from_dict(d: dict, where: str = "point") -> Point | LLMPoint:
    """A point from its JSON object, every field and the nested ones readers use type-checked."""
    if isinstance(d, dict) and d.get("kind") == "llm":
        q = _build(LLMPoint, d, where)
        q.ttft = _build(LatencyStats, q.ttft, f"{where}.ttft") if q.ttft else None
        q.itl = _build(LatencyStats, q.itl, f"{where}.itl") if q.itl else None
        _check_nested(q, where)
        return q
    p = _build(Point, d, where)
    p.staged = {k: _build(LatencyStats, v, f"{where}.staged.{k}") for k, v in p.staged.items()}
    p.e2e = _build(LatencyStats, p.e2e, f"{where}.e2e")
    if p.batch_size < 1:
        raise UserError(f"{where}.batch_size: expected at least 1, got {p.batch_size}")
    if len(p.input_hw) < 2:  # [height, width]; an ONNX file's point holds its whole input shape
        raise UserError(f"{where}.input_hw: expected at least [height, width], got {p.input_hw}")
    _check_nested(p, where)
    return p


PEAK_FIELDS = {
    "version": int,
    "device": str,
    "device_name": str,
    "nameplate_source": str,
    "copy_gbs": float,
    "copy_nameplate_gbs": float | None,
    "copy_ratio": float | None,
    "gemm": list,
    "provenance": dict,
}
PEAK_ROW_FIELDS = {
    "precision": str,
    "best_n": int | None,
    "measured_tflops": float | None,
    "nameplate_tflops": float | None,
    "ratio": float | None,
    "note": str,
}
PEAK_PRECISIONS = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")


def read_peak(path: Path) -> dict:
    """A `modelpower peak` record, validated: the fields that reports and claims read, typed."""
    doc = read_json(path, "peak file")
    if not isinstance(doc, dict) or doc.get("kind") != "modelpower-peak":
        raise UserError(f"{path} is not a `modelpower peak` file")
    _check_fields(doc, PEAK_FIELDS, str(path))  # gemm is a list from here on
    for i, g in enumerate(doc["gemm"]):
        _check_fields(g, PEAK_ROW_FIELDS, f"{path}: gemm[{i}]")
    precisions = [g["precision"] for g in doc["gemm"]]
    if doc["version"] != 1 or not precisions or len(set(precisions)) != len(precisions):
        raise UserError(f"{path}: needs version 1 and one gemm row per precision")
    if set(precisions) - set(PEAK_PRECISIONS):
        raise UserError(f"{path}: unknown precision(s) {sorted(set(precisions) - set(PEAK_PRECISIONS))}")
    return doc


def _check_fields(obj, schema: dict, where: str) -> None:
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected an object, got {type(obj).__name__}")
    for k, tp in schema.items():
        if k not in obj or not type_ok(obj[k], tp):
            raise UserError(f"{where}.{k}: missing, or not {_type_name(tp)} (finite, not negative)")


def read_result(path: Path) -> RunResult:
    """Read and validate a result file; a UserError naming the file if it is not one."""
    d = read_json(path, "result file")
    if not isinstance(d, dict) or "schema_version" not in d:
        raise UserError(f"{path} is not a modelpower result file (no schema_version)")
    version = d["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise UserError(f"{path}: schema_version must be a whole number, got {strip_control(repr(version))[:40]}")
    if version != SCHEMA_VERSION:
        raise UserError(f"{path} has result schema version {version}; this modelpower reads version {SCHEMA_VERSION}")
    r = _build(RunResult, d, str(path))
    _check_provenance(r.provenance, str(path))
    r.points = [point_from_dict(p, f"{path}: points[{i}]") for i, p in enumerate(r.points)]
    return r
