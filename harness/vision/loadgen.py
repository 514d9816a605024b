"""MLPerf LoadGen scenarios around the runner (`modelpower run --scenario ...`).

LoadGen (the `mlcommons-loadgen` package) decides when queries arrive and judges the run; we are
its SUT (system under test) and QSL (query sample library):
- QSL: `sample_count` samples, pre-processed once through the run's own data path and kept on the
  device, as MLPerf's ResNet-50 harness keeps its pre-processed images in memory. Pre-processing is
  therefore outside the timed path here, unlike `modelpower run`'s end-to-end window.
- SUT: worker threads take the queued samples in arrival order, up to the batch size at a time,
  gather them on the device, pad a short batch to the batch size (fixed shapes for compiled
  backends and engines; the padding is not counted as work), run the model and the run's own
  post-processing, wait for their own stream, and tell LoadGen the samples are complete. On a GPU
  two workers, each on its own CUDA stream, keep two batches in flight: while one waits for its
  results and reports them, the other's batch runs, so the GPU is not idle between batches. Each
  worker runs one batch before the test (per-thread state such as CUDA graphs is made then).
  Backends that replay one captured CUDA graph (torch-compile reduce-overhead/max-autotune, ONNX
  Runtime's CUDA graph) run one worker. The SUT's own overhead (the workers' time reporting
  completed samples to LoadGen; taking samples is a deque pop) is measured and reported.
Scenarios: offline (one query holding every sample: throughput), server (Poisson arrivals at a
target QPS, with a latency bound at the 99th percentile), singlestream (one sample per query,
each issued when the last completes: latency), multistream (queries of 8 samples back to back).
LoadGen's own summary file is parsed into the result: its verdict (VALID/INVALID), percentiles
and throughput, beside our FLOPs and energy figures over the same test.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from harness.errors import UserError
from harness.inputs import check_number
from harness.machine.devices import use_cuda_device
from harness.measure.energy import Meter
from harness.measure.memory import check_fits
from harness.measure.metrics import energy_per_work
from harness.measure.stats import latency_stats
from harness.measure.timing import repeat_timed, stream_sync
from harness.results.schema import Point
from harness.vision.images import ImageSource
from harness.vision.runner import LoadedModel, RunSettings, VisionPipeline, point_fields, prepare_checked

SCENARIOS = ("offline", "server", "singlestream", "multistream")
CLAIM_GRADE_S = 600.0  # MLPerf inference: every performance run lasts at least 600 s
# MLPerf's minimum query counts per scenario (*.<Scenario>.min_query_count in loadgen's mlperf.conf)
MLPERF_MIN_QUERIES = {"offline": 1, "server": 270_336, "singlestream": 1024, "multistream": 270_336}
SHORT_MIN_QUERIES = {"offline": 1, "server": 64, "singlestream": 64, "multistream": 64}
MULTISTREAM_SAMPLES = 8  # MLPerf's samples per multistream query
# host memory per scheduled server query: 10^6 queries raised LoadGen 5.x's peak RSS by 500 MB
# (measured on this project's CPU machine, a SUT that completes every query at once)
LOADGEN_QUERY_BYTES = 500


@dataclass
class LoadgenConfig:
    scenario: str
    min_duration_s: float
    claim_grade: bool = False
    target_qps: float | None = None  # server; None = half the calibrated throughput
    latency_bound_ms: float = 15.0  # server: MLPerf's ResNet-50 bound at the 99th percentile
    sample_count: int = 1024  # performance sample count (MLPerf ResNet-50: 1024)
    extra: dict = field(default_factory=dict)

    def check(self, batch_size: int) -> None:
        if self.scenario not in SCENARIOS:
            raise UserError(f"unknown --scenario {self.scenario!r}: use {', '.join(SCENARIOS)}")
        if self.scenario == "singlestream" and batch_size != 1:
            raise UserError("--scenario singlestream issues one sample per query: use -b 1")
        if self.scenario == "multistream" and batch_size != MULTISTREAM_SAMPLES:
            raise UserError(f"--scenario multistream issues {MULTISTREAM_SAMPLES} samples per query: use -b 8")
        if self.target_qps is not None:
            check_number("--target-qps", self.target_qps, 0, above=True)
            # LoadGen schedules every query of the test up front (Poisson arrivals)
            queries = self.target_qps * self.duration_s
            check_fits(
                f"--target-qps {self.target_qps:g} for {self.duration_s:g} s: LoadGen's schedule of "
                f"{queries:.3g} queries",
                queries * LOADGEN_QUERY_BYTES,
                0,
                torch.device("cpu"),
            )
        check_number("--latency-bound-ms", self.latency_bound_ms, 0, above=True)
        check_number("--loadgen-samples", self.sample_count, 1, 2**31 - 1)

    @property
    def duration_s(self) -> float:
        return max(self.min_duration_s, CLAIM_GRADE_S) if self.claim_grade else self.min_duration_s


def import_loadgen():
    try:
        import mlperf_loadgen  # inside the try: a missing LoadGen is one line
    except ImportError:
        raise UserError("--scenario needs MLPerf LoadGen: pip install mlcommons-loadgen") from None
    return mlperf_loadgen


def parse_summary(text: str) -> dict:
    """LoadGen's mlperf_log_summary.txt as {key: value}: numbers as numbers, the rest as text."""
    out: dict = {}
    for line in text.splitlines():
        if ":" not in line or line.lstrip().startswith(("*", "=")):
            continue
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not key or not value or key in out:
            continue
        try:
            out[key] = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            out[key] = value
    return out


def loadgen_throughput(summary: dict, scenario: str) -> float | None:
    """LoadGen's own samples/s for the scenario (what an MLPerf result table quotes)."""
    if scenario == "offline":
        return summary.get("Samples per second")
    if scenario == "server":
        return summary.get("Completed samples per second")
    qps = summary.get("QPS w/o loadgen overhead")
    if scenario == "multistream" and qps is None and summary.get("Mean latency (ns)"):
        return MULTISTREAM_SAMPLES / (summary["Mean latency (ns)"] / 1e9)
    return qps


class BatchingSUT:
    """The worker that serves LoadGen's queries in batches (see the module docstring)."""

    def __init__(
        self, lg, pipe: VisionPipeline, samples: torch.Tensor, meta: dict, batch_size: int, workers: int | None = None
    ):
        self.lg, self.pipe, self.samples, self.meta, self.bs = lg, pipe, samples, meta, batch_size
        self.queue: collections.deque = collections.deque()
        self.cv = threading.Condition()
        self.closing = False
        self.error: BaseException | None = None
        self.batch_s: list[float] = []
        self.latency_s: list[float] = []
        self.overhead_s = 0.0  # the workers' time reporting completed samples to LoadGen
        self.completed = 0
        self.first_issue: float | None = None
        self.last_done: float | None = None
        self.workers = workers or (2 if samples.is_cuda else 1)  # batches in flight
        # channels_last samples are gathered in their NHWC storage, so a batch keeps the layout
        nhwc = samples.dim() == 4 and samples.is_contiguous(memory_format=torch.channels_last)
        self.gather_from = samples.permute(0, 2, 3, 1) if nhwc and not samples.is_contiguous() else None
        self.ready = threading.Barrier(self.workers + 1)
        self.threads = [
            threading.Thread(target=self._work, name=f"loadgen-sut-{k}", daemon=True) for k in range(self.workers)
        ]
        for t in self.threads:
            t.start()
        self.ready.wait()  # each worker has run one batch (warm-up on its own thread and stream)

    def issue(self, query_samples) -> None:
        now = time.perf_counter()
        with self.cv:
            if self.first_issue is None:
                self.first_issue = now
            self.queue.extend((q.id, q.index, now) for q in query_samples)
            self.cv.notify()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        with self.cv:
            self.closing = True
            self.cv.notify_all()
        for t in self.threads:
            t.join()

    def run_batch(self, indices: list[int]) -> None:
        """Gather, pad, infer, post-process, wait for the device: one batch of the SUT."""
        idx = torch.tensor(indices, device=self.samples.device)
        if self.gather_from is not None:
            x = self.gather_from.index_select(0, idx).permute(0, 3, 1, 2)
        else:
            x = self.samples.index_select(0, idx)
        if len(indices) < self.bs:
            x = torch.cat([x, x[-1:].expand(self.bs - len(indices), *x.shape[1:])])
        ctx = dict(self.meta, x=x)
        with torch.inference_mode():
            ctx["y"] = self.pipe.run_model(x)
            self.pipe.finish(ctx)
        stream_sync(self.samples.device)  # this worker's stream: the other worker's batch keeps running

    def _work(self) -> None:
        cuda = self.samples.is_cuda
        if cuda:  # the current device is per thread, for torch and Numba alike
            use_cuda_device(self.samples.device)
        with torch.cuda.stream(torch.cuda.Stream(self.samples.device)) if cuda else contextlib.nullcontext():
            try:  # per-thread state (CUDA graphs of torch.compile, ORT's per-thread context) is made here,
                self.run_batch(list(range(min(self.bs, self.samples.shape[0]))))  # not in the test
            except BaseException as e:
                self.error = e
            self.ready.wait()
            self._serve()

    def _serve(self) -> None:
        while True:
            with self.cv:
                while not self.queue and not self.closing:
                    self.cv.wait()
                if not self.queue:
                    return
                take = [self.queue.popleft() for _ in range(min(self.bs, len(self.queue)))]
            t = time.perf_counter()
            if self.error is None:
                try:
                    self.run_batch([index for _, index, _ in take])
                except BaseException as e:  # LoadGen must still see every sample complete
                    self.error = e
            done = time.perf_counter()
            self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(qid, 0, 0) for qid, _, _ in take])
            reported = time.perf_counter()
            with self.cv:
                self.batch_s.append(done - t)
                self.latency_s.extend(done - issued for _, _, issued in take)
                self.completed += len(take)
                self.last_done = max(done, self.last_done or done)
                self.overhead_s += reported - done


def build_samples(pipe: VisionPipeline, count: int) -> tuple[torch.Tensor, dict]:
    """`count` pre-processed samples on the device, and the metadata post-processing needs."""
    chunks, have, i = [], 0, 0
    while have < count:
        ctx = pipe.context(i)
        chunks.append(ctx["x"].clone())
        have += ctx["x"].shape[0]
        i += 1
    meta = {k: v for k, v in pipe.context(0).items() if k not in ("x", "index", "slot", "frames")}
    return torch.cat(chunks)[:count], meta


def calibrate(sut: BatchingSUT, count: int, min_s: float = 1.0) -> tuple[float, float]:
    """(first batch's seconds, median seconds per full batch after 3 warm-up batches) through the
    SUT's path; the median sets LoadGen's expectations."""
    indices = [[(b * sut.bs + j) % count for j in range(sut.bs)] for b in range(8)]
    t = time.perf_counter()
    sut.run_batch(indices[0])
    first = time.perf_counter() - t
    for b in range(1, 3):
        sut.run_batch(indices[b])
    batch = itertools.count()
    times = repeat_timed(lambda: sut.run_batch(indices[next(batch) % 8]), min_s, 5)
    return first, float(np.median(times))


def loadgen_settings(lg, cfg: LoadgenConfig, batch_s: float, batch_size: int):
    """LoadGen's TestSettings for the scenario, its expectations taken from the calibration."""
    ts = lg.TestSettings()
    ts.scenario = {
        "offline": lg.TestScenario.Offline,
        "server": lg.TestScenario.Server,
        "singlestream": lg.TestScenario.SingleStream,
        "multistream": lg.TestScenario.MultiStream,
    }[cfg.scenario]
    ts.mode = lg.TestMode.PerformanceOnly
    ts.min_duration_ms = int(cfg.duration_s * 1000)
    ts.min_query_count = (MLPERF_MIN_QUERIES if cfg.claim_grade else SHORT_MIN_QUERIES)[cfg.scenario]
    sps = batch_size / batch_s
    # Offline issues expected_qps x duration x 1.1 samples: aim above the calibration so the
    # test lasts at least its minimum duration.
    ts.offline_expected_qps = sps * 1.5
    ts.single_stream_expected_latency_ns = max(1, int(batch_s * 1e9))
    ts.multi_stream_expected_latency_ns = max(1, int(batch_s * 1e9))
    ts.multi_stream_samples_per_query = MULTISTREAM_SAMPLES
    ts.server_target_qps = cfg.target_qps or sps / 2
    ts.server_target_latency_ns = int(cfg.latency_bound_ms * 1e6)
    return ts


def measure_loadgen(
    lm: LoadedModel,
    batch_size: int,
    source: ImageSource,
    s: RunSettings,
    cfg: LoadgenConfig,
    log_dir: Path,
    preprocess: str = "numba",
    meter: Meter | None = None,
    before_test=None,
) -> Point:
    """One LoadGen test of one model at one batch size; a Point with LoadGen's verdict in `loadgen`.

    `before_test`, if given, is called right before LoadGen starts (many devices: a barrier)."""
    lg = import_loadgen()
    cfg.check(batch_size)
    pipe = VisionPipeline(lm, batch_size, source, s, preprocess)
    prepared, agree = prepare_checked(lm, pipe, s)
    samples, meta = build_samples(pipe, cfg.sample_count)
    n = samples.shape[0]
    graphs = bool(prepared.info.get("cuda_graphs")) or any(
        str(v).strip().lower() in ("1", "true") for k, v in s.ort_options.items() if "cuda_graph" in k
    )
    sut = BatchingSUT(lg, pipe, samples, meta, batch_size, workers=1 if graphs else None)
    first_s, batch_s = calibrate(sut, n)
    ts = loadgen_settings(lg, cfg, batch_s / sut.workers, batch_size)  # workers overlap: expect up to N x
    log_dir.mkdir(parents=True, exist_ok=True)
    log = lg.LogSettings()
    log.log_output.outdir = str(log_dir)
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False  # the trace grows with the test: hundreds of MB at claim grade
    lg_sut = lg.ConstructSUT(sut.issue, sut.flush)
    lg_qsl = lg.ConstructQSL(n, n, lambda ids: None, lambda ids: None)  # samples already resident
    meter = meter or Meter()
    if before_test is not None:
        before_test()
    meter.start()
    try:
        lg.StartTestWithLogSettings(lg_sut, lg_qsl, ts, log)
    finally:
        reading = meter.stop()
        sut.close()
        lg.DestroyQSL(lg_qsl)
        lg.DestroySUT(lg_sut)
    if sut.error is not None:
        raise sut.error
    summary_path = log_dir / "mlperf_log_summary.txt"
    if not summary_path.exists():
        raise UserError(f"LoadGen wrote no summary in {log_dir}: see mlperf_log_detail.txt there")
    summary = parse_summary(summary_path.read_text())
    window = (sut.last_done or 0) - (sut.first_issue or 0)
    throughput = sut.completed / window if window > 0 else 0.0
    verdict = summary.get("Result is", "unknown")
    fields = point_fields(
        lm, s, batch_size, prepared, agree, throughput, reading, [] if verdict == "VALID" else ["loadgen_invalid"]
    )
    if reading.joules is not None and sut.completed:  # energy over the test (measured or a labelled estimate)
        fields.update(energy_per_work(reading.joules, sut.completed, lm.flops_per_sample * sut.completed))
    batch_stats = latency_stats(sut.batch_s)
    return Point(
        **fields,
        preprocess=preprocess + ("-cuda" if pipe.device_pre else "") + " (untimed: QSL)",
        first_call_s=first_s,
        warmup_iters=3,
        staged={"batch": batch_stats},
        staged_window_s=sum(sut.batch_s),
        e2e=latency_stats(sut.latency_s),
        window_s=window,
        iterations=len(sut.batch_s),
        samples=sut.completed,
        infer_tflops=lm.flops_per_sample * batch_size / (batch_stats.mean_ms / 1e3) / 1e12,
        input_source=f"{n} pre-processed samples of {source.description}",
        pre_threads_overlapped=0,
        output_check={"checked_batches": 0, "nan_or_inf": False},
        loadgen={
            "scenario": cfg.scenario,
            "result": verdict,
            "claim_grade": cfg.claim_grade,
            "samples_per_second": loadgen_throughput(summary, cfg.scenario),
            "min_duration_s": cfg.duration_s,
            "min_query_count": ts.min_query_count,
            "calibrated_batch_ms": batch_s * 1e3,
            "offline_expected_qps": ts.offline_expected_qps if cfg.scenario == "offline" else None,
            "server_target_qps": ts.server_target_qps if cfg.scenario == "server" else None,
            "server_latency_bound_ms": cfg.latency_bound_ms if cfg.scenario == "server" else None,
            "padded_samples": len(sut.batch_s) * batch_size - sut.completed,
            "sut_workers": sut.workers,  # batches in flight (one CUDA stream each on a GPU)
            "sut_overhead_s": sut.overhead_s,  # the workers' time reporting to LoadGen, all batches
            "sut_overhead_ms_per_batch": sut.overhead_s / max(1, len(sut.batch_s)) * 1e3,
            "log_dir": str(log_dir),
            "summary": summary,
        },
    )


def describe(point: Point) -> str:
    """One line: LoadGen's verdict and figures for a point."""
    lgd = point.loadgen or {}
    s = lgd.get("summary", {})
    sps = lgd.get("samples_per_second")
    parts = [f"{point.model} b{point.batch_size} {lgd.get('scenario')}: {lgd.get('result')}"]
    if sps:
        parts.append(f"{sps:,.1f} samples/s (LoadGen)")
    for key in ("90.0th percentile latency (ns)", "99.0th percentile latency (ns)", "99.00 percentile latency (ns)"):
        if key in s:
            parts.append(f"{key.split(' latency')[0]} latency {s[key] / 1e6:.2f} ms")
            break
    if lgd.get("scenario") == "server":
        held = s.get("Performance constraints satisfied")
        parts.append(f"latency bound {lgd.get('server_latency_bound_ms')} ms held: {held}")
    return ", ".join(parts)
