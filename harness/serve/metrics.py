"""What a served load delivered, from the client's records (docs/measurement.md, "Served endpoints").

Per request, on the client's clock: TTFT = first content chunk - sent; ITL = the gaps between
consecutive content chunks (a chunk may carry more than one token); TPOT = (end - first chunk) /
(output tokens - 1); E2E = end - sent. vLLM's `bench serve` takes the same TTFT and E2E, computes
TPOT the same way and ITL per chunk as here; GenAI-Perf names TPOT "inter-token latency".
Throughputs are what completed in the measured window over the window's length. Goodput counts the
requests that met every stated SLO. Output tokens are counted, never assumed: the server's `usage`
where it sends a sane one, else our tokenizer on the streamed text (no BOS counted).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from harness.errors import UserError
from harness.measure.stats import LatencyStats, latency_stats
from harness.serve.client import RequestRecord

SLO_KEYS = {"ttft": "TTFT", "tpot": "TPOT", "e2e": "E2E latency"}


def parse_slo(text: str | None) -> dict[str, float]:
    """`ttft=500,tpot=50` (milliseconds; keys ttft, tpot, e2e) -> {"ttft": 500.0, "tpot": 50.0}."""
    if not text:
        return {}
    out: dict[str, float] = {}
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\w+)\s*=\s*([0-9]*\.?[0-9]+)\s*(ms)?\s*", part)
        if not m or m.group(1).lower() not in SLO_KEYS:
            raise UserError(
                f"--slo takes KEY=MS pairs with keys {', '.join(SLO_KEYS)} (e.g. ttft=500,tpot=50), "
                f"got {part.strip()!r}"
            )
        key, value = m.group(1).lower(), float(m.group(2))
        if key in out:
            raise UserError(f"--slo {key} is given twice")
        if value <= 0:
            raise UserError(f"--slo {key} must be > 0 ms, got {value:g}")
        out[key] = value
    return out


@dataclass
class RequestTimes:
    """One successful request's latencies in milliseconds."""

    ttft_ms: float
    e2e_ms: float
    tpot_ms: float | None  # None: one output token
    itl_ms: list[float]


def request_times(rec: RequestRecord) -> RequestTimes:
    first, end = rec.chunks[0], rec.end
    n = rec.output_tokens or 0
    itl = [(b - a) * 1e3 for a, b in zip(rec.chunks, rec.chunks[1:], strict=False)]
    tpot = (end - first) * 1e3 / (n - 1) if n > 1 else None
    return RequestTimes((first - rec.sent) * 1e3, (end - rec.sent) * 1e3, tpot, itl)


def meets(t: RequestTimes, slo: dict[str, float]) -> bool:
    """Whether one request met every stated SLO (a TPOT SLO is met by a one-token output)."""
    return (
        t.ttft_ms <= slo.get("ttft", float("inf"))
        and t.e2e_ms <= slo.get("e2e", float("inf"))
        and (t.tpot_ms is None or t.tpot_ms <= slo.get("tpot", float("inf")))
    )


def count_tokens(rec: RequestRecord, prompt_tokens: int | None, tokenizer) -> str | None:
    """Fill the record's token counts: the server's usage first, else our tokenizer on the streamed
    text; returns how the output was counted ("usage", "tokenizer"), None if it could not be."""
    usage = rec.usage or {}
    given = usage.get("prompt_tokens")
    rec.prompt_tokens = given if _count_ok(given) and given > 0 else prompt_tokens
    given = usage.get("completion_tokens")
    if _count_ok(given) and given > 0:  # a stream that carried content made at least one token
        rec.output_tokens = given
        return "usage"
    if tokenizer is not None:
        rec.output_tokens = tokenizer.count("".join(rec.text))
        return "tokenizer"
    return None


MAX_TOKENS = 10_000_000  # a count beyond this in `usage` is a broken server, not a measurement


def _count_ok(n) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_TOKENS


@dataclass
class ServedSummary:
    """Every figure of one measured window."""

    ok: int
    failed: dict[str, int]  # failure class -> count
    window_s: float
    ttft: LatencyStats | None
    itl: LatencyStats | None
    tpot: LatencyStats | None
    e2e: LatencyStats | None
    requests_per_s: float
    output_tokens_per_s: float
    total_tokens_per_s: float
    goodput_rps: float | None  # None: no SLO stated
    slo_attainment: float | None  # met / all requests in the window, failed ones included
    prompt_tokens: int
    output_tokens: int
    mean_output_tokens: float | None
    token_counts: str  # how output tokens were counted


def summarize(records: list[RequestRecord], window_s: float, slo: dict[str, float], counted_by: str) -> ServedSummary:
    """The window's figures from the requests that completed in it (failed ones counted by class)."""
    good = [r for r in records if r.ok]
    failed = Counter(r.error for r in records if not r.ok)
    times = [request_times(r) for r in good]
    out_tokens = sum(r.output_tokens or 0 for r in good)
    in_tokens = sum(r.prompt_tokens or 0 for r in good)
    itl = [x for t in times for x in t.itl_ms]
    tpot = [t.tpot_ms for t in times if t.tpot_ms is not None]
    met = sum(meets(t, slo) for t in times) if slo else None
    per_s = 1 / window_s if window_s > 0 else 0.0
    return ServedSummary(
        ok=len(good),
        failed=dict(sorted(failed.items())),
        window_s=window_s,
        ttft=latency_stats([t.ttft_ms / 1e3 for t in times]) if times else None,
        itl=latency_stats([x / 1e3 for x in itl]) if itl else None,
        tpot=latency_stats([x / 1e3 for x in tpot]) if tpot else None,
        e2e=latency_stats([t.e2e_ms / 1e3 for t in times]) if times else None,
        requests_per_s=len(good) * per_s,
        output_tokens_per_s=out_tokens * per_s,
        total_tokens_per_s=(in_tokens + out_tokens) * per_s,
        goodput_rps=met * per_s if met is not None else None,
        slo_attainment=met / len(records) if met is not None and records else None,
        prompt_tokens=in_tokens,
        output_tokens=out_tokens,
        mean_output_tokens=out_tokens / len(good) if good else None,
        token_counts=counted_by,
    )
