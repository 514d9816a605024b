"""The served-endpoint benchmark (`modelpower serve-bench URL`): a request in, a result file out.

`run_serve` checks the request, resolves the tokenizer and model config once, sends one request
to prove the server answers as asked (a wrong URL, model name or API key is one line, before any
result file exists), then measures every load point (closed-loop concurrencies, then request
rates, then the SLO search) in one `ResultSession`. Each point is an `LLMPoint` (engine
"served") with the same fields as `run-llm`'s where they mean the same thing, so `report`,
`compare` and `claim` read it; what only a served point has (load shape, failures by class,
goodput, E2E and TPOT series, delivered TFLOPS of the whole workload) is under `served`.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np

from harness.errors import UserError
from harness.inputs import SEED, check_number, check_writable
from harness.llm.prompts import read_prompt_file
from harness.llm.source import resolve_model
from harness.machine.specs import match_spec
from harness.measure.energy import Meter, NvmlMeter, RaplMeter, select_meter
from harness.measure.metrics import energy_per_token
from harness.measure.window import Window
from harness.results.schema import LLMPoint
from harness.results.session import RESULTS_DIR, Events, LocalSink, ResultSession
from harness.serve import client
from harness.serve.client import Prompt, RequestRecord
from harness.serve.load import Load, Outcome, run_load
from harness.serve.metrics import ServedSummary, count_tokens, parse_slo, summarize
from harness.serve.server import CpuShareMeter, ServerFacts, SumMeter, find_server, server_peak
from models.llm.flops import generation_flops

SERVE_WINDOW = Window(warmup=2, min_duration=10.0, min_iters=20)
PRECISIONS = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")  # the spec table's, for MFU's denominator


@dataclass
class ServeRequest:
    """Everything `modelpower serve-bench` was asked."""

    url: str  # the server's base URL, e.g. http://127.0.0.1:8000
    model: str  # the model name the server serves
    api: str = "completions"  # or "chat"
    tokenizer: str | None = None  # HF folder, GGUF file (or preset, for its config only)
    concurrency: list[int] = field(default_factory=list)
    request_rates: list[float] = field(default_factory=list)  # math.inf: all at once
    burstiness: float | None = None  # open loop: None: Load's (1, Poisson)
    max_concurrency: int | None = None
    prompts: Path | None = None
    num_prompts: int = 200  # distinct prompts drawn (file records sampled, or synthetic prompts made)
    prompt_len: int = 128  # synthetic prompts' token length
    output_len: int | None = None  # None: OUTPUT_LEN, or each file record's own
    ignore_eos: bool = False
    slo: str | None = None  # ttft=MS,tpot=MS,e2e=MS
    find_rate: bool = False  # search the highest rate whose SLO attainment meets `slo_attainment`
    slo_attainment: float | None = None  # None: SLO_ATTAINMENT
    search_steps: int = 5
    window: Window = SERVE_WINDOW
    max_requests: int = 10_000  # per point, warm-up and ramp-down included
    max_duration: float = 600.0  # seconds per point
    timeout: float = 300.0  # seconds per request
    device: str = "auto"  # look for the server's process on this host: auto, cpu, cuda, none
    precision: str | None = None  # --server-precision: MFU's denominator (None: not known, no MFU)
    server_device: str | None = None  # --server-device: the spec table's name for the server's device
    server_devices: int | None = None  # --server-devices: how many of them the server uses
    assume_watts: float | None = None
    api_key_env: str = "OPENAI_API_KEY"
    save_requests: bool = False
    out_dir: Path = RESULTS_DIR
    seed: int = SEED

    OUTPUT_LEN = 128
    SLO_ATTAINMENT = 0.9

    @property
    def attainment(self) -> float:
        return self.SLO_ATTAINMENT if self.slo_attainment is None else self.slo_attainment

    @property
    def base_url(self) -> str:
        """The URL without a trailing slash or /v1 (the OpenAI SDK's convention): the API paths add it."""
        return self.url.rstrip("/").removesuffix("/v1")

    def loads(self) -> list[Load]:
        """The fixed load points in order: closed loop first, then open loop."""
        rates = [
            Load(rate=r, burstiness=self.burstiness or Load.burstiness, max_concurrency=self.max_concurrency)
            for r in self.request_rates
        ]
        closed = [Load(concurrency=c) for c in self.concurrency]
        return closed + rates if closed or rates or self.find_rate else [Load(concurrency=1)]

    def check(self) -> dict[str, float]:
        """Every option on its own; returns the parsed SLOs."""
        try:
            u = urlparse(self.url)
            u.port  # noqa: B018 (raises ValueError for a port that is not a number in 0..65535)
        except ValueError as e:
            raise UserError(f"URL {self.url!r} is not a valid URL: {e}") from None
        if u.scheme not in ("http", "https") or not u.hostname:
            raise UserError(f"URL must look like http://HOST:PORT (the server's base URL), got {self.url!r}")
        if u.username or u.password or u.query or u.fragment:
            raise UserError(
                "the URL takes no credentials, query or fragment (they would be recorded in the result): "
                "put an API key in an environment variable (--api-key-env NAME)"
            )
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
            raise UserError(
                f"--api-key-env names an environment variable (e.g. OPENAI_API_KEY), got "
                f"{self.api_key_env[:4]!r}...: give the variable's name, not the key"
            )
        if u.path.rstrip("/").endswith(("/completions", "/chat/completions")):
            raise UserError(f"give the server's base URL, not an endpoint path ({self.url!r}); --api picks the path")
        if not self.model.strip():
            raise UserError("--model names the model the server serves (its /v1/models id)")
        if self.api not in client.APIS:
            raise UserError(f"unknown --api {self.api!r}: use {', '.join(client.APIS)}")
        check_number("--min-requests", self.window.min_iters, 1)
        self.window.check()
        for n in self.concurrency:
            check_number("--concurrency", n, 1, 100_000)
        if self.max_concurrency is not None:
            check_number("--max-concurrency", self.max_concurrency, 1, 100_000)
        for r in self.request_rates:
            if not math.isinf(r):
                check_number("--request-rate", r, 1e-6)
        if self.burstiness is not None:
            check_number("--burstiness", self.burstiness, 0.01, 1000)
        if (self.burstiness is not None or self.max_concurrency is not None) and not (
            self.request_rates or self.find_rate
        ):
            raise UserError(
                "--burstiness and --max-concurrency shape open-loop load: add --request-rate or --find-rate"
            )
        if self.precision is not None and self.precision not in PRECISIONS:
            raise UserError(f"unknown --precision (--server-precision) {self.precision!r}: use {', '.join(PRECISIONS)}")
        if self.device.strip().lower() not in ("auto", "cpu", "cuda", "none"):
            raise UserError(f"--device is auto, cpu, cuda or none (where to look for the server), got {self.device!r}")
        if self.server_device is not None and match_spec(self.server_device) is None:
            raise UserError(
                f"--server-device {self.server_device!r} matches no row of the spec table "
                "(`modelpower devices` and docs/measurement.md name them; add one with --spec)"
            )
        if self.server_devices is not None:
            check_number("--server-devices", self.server_devices, 1, 100_000)
        check_number("--num-prompts", self.num_prompts, 1, 1_000_000)
        check_number("--prompt-len", self.prompt_len, 1, 1_000_000)
        if self.output_len is not None:
            check_number("--output-len", self.output_len, 1, 1_000_000)
        check_number("--max-requests", self.max_requests, 1)
        check_number("--max-duration", self.max_duration, 0, above=True)
        check_number("--timeout", self.timeout, 0, above=True)
        check_number("--slo-attainment", self.attainment, 0, 1, above=True)
        check_number("--search-steps", self.search_steps, 1, 20)
        check_number("--seed", self.seed, 0, 2**32 - 1)
        if self.assume_watts is not None:
            check_number("--assume-watts", self.assume_watts, 0, above=True)
        slo = parse_slo(self.slo)
        if self.find_rate and not slo:
            raise UserError("--find-rate searches the highest rate that meets the SLOs: add --slo ttft=MS,tpot=MS")
        if self.slo_attainment is not None and not slo:
            raise UserError("--slo-attainment is the share of requests that must meet the SLOs: add --slo")
        return slo


@dataclass
class ServedWorkload:
    """What the requests send, and how their tokens are counted."""

    prompts: list[Prompt]
    tokenizer: object | None
    cfg: object | None  # models.llm.config.LLMConfig: FLOPs per token
    describe: str


def _workload(req: ServeRequest) -> ServedWorkload:
    """The prompts (a file through run-llm's loaders, or seeded synthetic ones), the tokenizer and
    model config (from --tokenizer, read once)."""
    src = resolve_model(req.tokenizer) if req.tokenizer else None
    tok, cfg = (src.tokenizer, src.cfg) if src else (None, None)
    why = src.why_no_tokenizer if src else "no --tokenizer given"
    if req.prompts is not None:
        vocab = cfg.vocab_size if cfg else 2**31
        records = read_prompt_file(req.prompts, tok, vocab, req.num_prompts, req.seed, why)
        prompts = []
        for r in records:
            n = req.output_len or r.output_len or req.OUTPUT_LEN
            text = r.text if r.text is not None else (tok.decode(r.ids) if tok else r.ids)
            if isinstance(text, list) and req.api == "chat":
                raise UserError(
                    f"prompts file {req.prompts} holds token ids: --api chat sends text (use "
                    "--api completions, or give --tokenizer to decode them)"
                )
            prompts.append(Prompt(text, len(r.ids), n))
        return ServedWorkload(prompts, tok, cfg, f"{req.prompts} ({len(prompts)} prompts)")
    if tok is None:
        raise UserError(
            f"synthetic prompts of {req.prompt_len} tokens need the model's tokenizer: give --tokenizer "
            "(its HF folder or GGUF file), or --prompts FILE"
        )
    rng = np.random.default_rng(req.seed)
    n = req.output_len or req.OUTPUT_LEN
    prompts = [
        Prompt(tok.decode(rng.integers(0, cfg.vocab_size, req.prompt_len).tolist()), req.prompt_len, n)
        for _ in range(req.num_prompts)
    ]
    return ServedWorkload(prompts, tok, cfg, f"{req.num_prompts} seeded synthetic prompts of {req.prompt_len} tokens")


def _headers(req: ServeRequest) -> dict[str, str]:
    key = os.environ.get(req.api_key_env)
    return {"Authorization": f"Bearer {key}"} if key else {}


def _sender(req: ServeRequest, wl: ServedWorkload, http: httpx.AsyncClient, headers: dict):
    """`send(i)`: the i-th request (prompts cycled), its tokens counted."""
    counted: dict[str, int] = {}

    async def send(i: int) -> RequestRecord:
        p = wl.prompts[i % len(wl.prompts)]
        body = client.payload(req.api, req.model, p, req.ignore_eos)
        rec = await client.send_within(http, req.base_url, req.api, body, headers, req.timeout)
        if rec.ok:
            how = count_tokens(rec, p.prompt_tokens, wl.tokenizer)
            counted[how or "none"] = counted.get(how or "none", 0) + 1
        return rec

    return send, counted


def _client(req: ServeRequest, width: int | None) -> httpx.AsyncClient:
    """The HTTP client: `width` connections at most (None: as many as requests in flight)."""
    limits = httpx.Limits(max_connections=width, max_keepalive_connections=width)
    return httpx.AsyncClient(timeout=httpx.Timeout(req.timeout, connect=min(10.0, req.timeout)), limits=limits)


def preflight(req: ServeRequest, wl: ServedWorkload) -> str:
    """One request before anything is recorded: the server must answer this model with a stream
    whose tokens can be counted. Returns how they are counted; one UserError line otherwise."""

    async def once() -> tuple[RequestRecord, dict]:
        async with _client(req, 1) as http:
            send, counted = _sender(req, wl, http, _headers(req))
            return await send(0), counted

    rec, counted = asyncio.run(once())
    where = f"{req.base_url}{client.PATHS[req.api]}"
    if rec.error == "connect":
        raise UserError(f"cannot reach {where}: {rec.detail}")
    if rec.error is not None:
        hints = {
            "http-401": f" (an API key? it is read from ${req.api_key_env})",
            "http-404": " (a wrong --model name, or --api for an endpoint the server lacks?)",
        }
        hint = hints.get(rec.error, "")
        raise UserError(f"{where} failed the first request: {rec.error}: {rec.detail}{hint}")
    if "usage" not in counted and "tokenizer" not in counted:
        raise UserError(
            "the server reports no token usage: give --tokenizer (the model's HF folder or GGUF file) "
            "to count output tokens"
        )
    return "server usage" if "usage" in counted else "our tokenizer on the streamed text"


def _flops(cfg, records: list[RequestRecord]) -> float | None:
    """FLOPs of the window's work with the model's config: each request's prefill and decode."""
    if cfg is None:
        return None
    return float(
        sum(generation_flops(cfg, r.prompt_tokens, r.output_tokens or 0) for r in records if r.ok and r.prompt_tokens)
    )


def _point(
    req: ServeRequest,
    wl: ServedWorkload,
    load: Load,
    out: Outcome,
    s: ServedSummary,
    server: ServerFacts,
    reading,
    extra: dict,
) -> LLMPoint:
    """The load point as an LLMPoint: run-llm's fields where they mean the same, the rest under `served`."""
    flops = _flops(wl.cfg, out.records)
    delivered = flops / s.window_s / 1e12 if flops and s.window_s > 0 else None
    peak, peak_src = server_peak(server)
    j = reading.joules if reading is not None else None  # measured, or an estimate labelled as one
    flags = [f"failed_requests:{k}" for k in s.failed] + ([f"stopped: {out.stopped}"] if out.stopped else [])
    flags += reading.flags() if reading is not None else []
    served = {
        "url": req.url,
        "api": req.api,
        "load": load.to_dict(),
        "peak_in_flight": out.peak_in_flight,
        "offered_rps": out.offered_rps,
        "requests": {
            "ok": s.ok,
            "failed": s.failed,
            "sent": out.sent,
            "warmup": out.warmup,
            "ramp_down": out.ramp_down,
            "cancelled_at_max_duration": out.cancelled,
        },
        "token_counts": s.token_counts,
        "e2e": s.e2e.__dict__ if s.e2e else None,
        "tpot": s.tpot.__dict__ if s.tpot else None,
        "goodput_rps": s.goodput_rps,
        "slo": parse_slo(req.slo) or None,
        "slo_attainment": s.slo_attainment,
        "meets_slo": s.slo_attainment >= req.attainment if s.slo_attainment is not None else None,
        "delivered_tflops": delivered,
        "mfu": delivered / peak if delivered and peak else None,
        "mfu_not_computed": None if peak else peak_src,
        "origins": server.origin,
        "itl_is": "gaps between streamed chunks (a chunk may carry more than one token)",
        "ignore_eos": req.ignore_eos,
        "stopped": out.stopped,
        **extra,
    }
    if req.save_requests:
        t0 = min((r.sent for r in out.all_records), default=0.0)
        served["request_records"] = [
            {
                "sent_s": r.sent - t0,
                "ttft_ms": (r.chunks[0] - r.sent) * 1e3 if r.chunks else None,
                "e2e_ms": (r.end - r.sent) * 1e3 if r.end else None,
                "chunks": len(r.chunks),
                "output_tokens": r.output_tokens,
                "error": r.error,
                "detail": r.detail,
            }
            for r in out.records
        ]
    cfg = wl.cfg
    return LLMPoint(
        kind="llm",
        model=req.model,
        source={"kind": "served", "url": req.url, "api": req.api},
        device=server.device_type or "remote",
        device_name=server.describe(),
        precision=req.precision or "not given",
        batch_size=load.concurrency or load.max_concurrency or out.peak_in_flight,
        prompt_len=round(s.prompt_tokens / s.ok) if s.ok else 0,
        output_len=req.output_len or _requested_output(wl),
        sampling={"temperature": 0.0, "top_k": 0, "top_p": 1.0},
        status="ok" if s.ok else "failed",
        params=cfg.param_count() if cfg else 0,
        compiled=False,
        runs=s.ok,
        window_s=s.window_s,
        ttft=s.ttft,
        itl=s.itl,
        tpot_ms=s.tpot.mean_ms if s.tpot else None,
        total_tokens_per_s=s.total_tokens_per_s,
        output_tokens_per_s=s.output_tokens_per_s,
        requests_per_s=s.requests_per_s,
        mfu_peak_tflops=peak,
        mfu_peak_source=peak_src,
        energy=reading.to_dict() if reading is not None else None,
        **energy_per_token(j, s.output_tokens, flops or 0),
        detail=_detail(s, out),
        prompt_tokens_mean=s.prompt_tokens / s.ok if s.ok else None,
        output_tokens_mean=s.mean_output_tokens,
        engine="served",
        timestamps="client clock, one per streamed chunk",
        flags=flags,
        served=served,
    )


def _detail(s: ServedSummary, out: Outcome) -> str | None:
    """Why a point has no figures, or None when it has them."""
    if s.ok:
        return None
    return out.stopped if out.t_never_opened else f"no request in the window succeeded: {s.failed}"


def _requested_output(wl: ServedWorkload) -> int:
    """The requested output length when each record has its own: their mean, rounded."""
    return round(sum(p.output_len for p in wl.prompts) / len(wl.prompts))


def _measure(req: ServeRequest, wl: ServedWorkload, load: Load, meter: Meter, progress: Callable | None) -> tuple:
    """Run one load point: (outcome, summary, energy reading or None)."""
    width = load.concurrency or load.max_concurrency  # open loop without a cap: no limit on the client's side
    window_meter = _WindowMeter(meter)

    async def go() -> Outcome:
        async with _client(req, width) as http:
            send, counted = _sender(req, wl, http, _headers(req))
            out = await run_load(
                send, load, req.window, req.max_requests, req.max_duration, req.seed, progress, window_meter
            )
            return out, counted

    out, counted = asyncio.run(go())
    how = " and ".join(k for k in ("usage", "tokenizer") if k in counted) or "none"
    s = summarize(out.records, out.window_s, parse_slo(req.slo), how)
    return out, s, window_meter.reading


def _server_meter(req: ServeRequest, server: ServerFacts) -> Meter:
    """The energy meter charged to the server: an estimate if asked (--assume-watts), else its GPUs'
    board counters or its share of the CPU package when its process is on this host, else none."""
    if req.assume_watts is not None:
        return select_meter(server.device_type or "cpu", 0, req.assume_watts)
    if not server.local:
        return Meter()
    try:
        if server.gpus:
            meters = [NvmlMeter(i) for i in server.gpus]
            return meters[0] if len(meters) == 1 else SumMeter(meters)
        return CpuShareMeter(RaplMeter(), server.pid)
    except Exception:  # no counter readable here (no RAPL, NVML failing): not measured
        return Meter()


class _WindowMeter:
    """The energy meter bracketing exactly the measured window (started and stopped by run_load)."""

    def __init__(self, meter: Meter):
        self.meter, self.reading = meter, None

    def start(self) -> None:
        self.meter.start()

    def stop(self) -> None:
        if self.reading is None:
            self.reading = self.meter.stop()


def run_serve(req: ServeRequest, events: Events | None = None) -> tuple[ResultSession, float | None]:
    """Check `req`, prove the server answers, measure every load point into one result file.
    Returns (the session, the highest rate found to meet the SLOs or None)."""
    events = events or Events()
    slo = req.check()
    wl = _workload(req)
    check_writable(req.out_dir)
    server = find_server(req.url, req.device.strip().lower(), req.precision, req.server_device, req.server_devices)
    counted = preflight(req, wl)
    events.note(f"server: {req.url} answers {req.model!r}; output tokens counted by {counted}")
    meter = _server_meter(req, server)
    if meter.name == "none":
        events.note(f"energy: not measured: the server is not a process on this host ({server.origin['process']})")
    peak, why = server_peak(server)
    if peak is None:
        events.note(f"MFU: {why}")
    config = {
        "url": req.url,
        "api": req.api,
        "model": req.model,
        "tokenizer": req.tokenizer,
        "prompts": wl.describe,
        "output_len": req.output_len or "each record's own or " + str(req.OUTPUT_LEN),
        "ignore_eos": req.ignore_eos,
        "loads": [ld.to_dict() for ld in req.loads()],
        "slo_ms": slo or None,
        "find_rate": req.find_rate,
        "window": {
            "warmup_requests": req.window.warmup,
            "min_duration_s": req.window.min_duration,
            "min_requests": req.window.min_iters,
        },
        "max_requests": req.max_requests,
        "max_duration_s": req.max_duration,
        "timeout_s": req.timeout,
        "server": {"pid": server.pid, "device": server.describe(), "origins": server.origin},
        "energy_meter": meter.name,
        "assume_watts": req.assume_watts,
        "api_key": f"from ${req.api_key_env}" if os.environ.get(req.api_key_env) else None,
        "seed": req.seed,
    }
    found = None
    with ResultSession(config, LocalSink(req.out_dir)) as session:

        def point(load: Load, extra: dict | None = None) -> LLMPoint:
            with events.track(f"{req.model} {load.describe()}", 1, "requests") as tick:
                out, s, reading = _measure(req, wl, load, meter, lambda n, bad, t: tick("window", t, n))
            pt = _point(req, wl, load, out, s, server, reading, extra or {})
            session.add(pt)
            return pt

        for load in req.loads():
            point(load)
        if req.find_rate:
            found = _find_rate(req, point)
            session.result.notes.append(
                f"highest request rate meeting the SLOs ({req.slo}, at least {req.attainment:.0%} of requests): "
                + (f"{found:.3g} requests/s" if found else "none found (no rate tried met them)")
            )
    return session, found


def _find_rate(req: ServeRequest, point: Callable) -> float | None:
    """Bisect the request rate between 0 and the saturated throughput (rate inf) for the highest rate
    whose SLO attainment is at least the required share; every probe is a recorded point."""
    cap = req.max_concurrency
    top = point(Load(rate=math.inf, max_concurrency=cap), {"search": {"step": 0, "role": "saturation"}})
    hi = top.requests_per_s or 0.0
    if hi <= 0:
        return None
    if top.served["meets_slo"]:
        return hi
    lo, best = 0.0, None
    for step in range(1, req.search_steps + 1):
        rate = (lo + hi) / 2
        load = Load(rate=rate, burstiness=req.burstiness or Load.burstiness, max_concurrency=cap)
        pt = point(load, {"search": {"step": step}})
        ok = bool(pt.served["meets_slo"])
        lo, hi = (rate, hi) if ok else (lo, rate)
        best = rate if ok else best
    return best
