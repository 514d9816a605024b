"""pytest-benchmark: serve-bench's own cost per streamed chunk (parse + timestamp + bookkeeping) on
a recorded stream, in the format `transformers serve` sends (one event per token, usage at the end).
Target: at most 20 us per chunk, so one client process follows at least 50,000 chunks/s.

Disabled by default (a plain `pytest` runs it once, as a smoke test); to measure:
    pytest tests/benchmarks/test_bench_serve_client.py --benchmark-enable
"""

import json
import time

from harness.serve.client import RequestRecord, parse_event

CHUNKS = 1000
WORDS = [" the", " defect", " on", " the", " steel", " strip", " is", " a", " scratch", ".", "\n"]


def recorded_stream(n: int = CHUNKS) -> list[str]:
    """`n` content events and a final usage event, as lines the client reads (blank separators included)."""
    lines = []
    for i in range(n):
        event = {
            "id": "da5c4566-e350-4591-b17c-ed661379f572",
            "choices": [{"index": 0, "text": WORDS[i % len(WORDS)]}],
            "created": 1796205051,
            "model": "/models/smollm2",
            "object": "text_completion",
        }
        lines += [f"data: {json.dumps(event)}", ""]
    end = {"choices": [{"finish_reason": "length", "index": 0, "text": ""}], "usage": {"completion_tokens": n}}
    return [*lines, f"data: {json.dumps(end)}", ""]


def replay(lines: list[str]) -> RequestRecord:
    """Read a recorded stream exactly as `client.send` reads a live one."""
    clock = time.perf_counter
    rec = RequestRecord(sent=clock())
    for line in lines:
        if parse_event(line, "completions", rec, clock()):
            break
    rec.end = clock()
    return rec


def test_client_cost_per_chunk(benchmark):
    lines = recorded_stream()
    rec = benchmark(replay, lines)
    assert len(rec.chunks) == CHUNKS and rec.usage == {"completion_tokens": CHUNKS}
    if benchmark.stats:  # --benchmark-enable: say the cost per chunk beside the target
        per_chunk_us = benchmark.stats.stats.median / CHUNKS * 1e6
        benchmark.extra_info["us_per_chunk"] = per_chunk_us
        print(
            f"\nserve-bench client: {per_chunk_us:.2f} us per chunk (target <= 20), "
            f"{1e6 / per_chunk_us:,.0f} chunks/s per process"
        )
