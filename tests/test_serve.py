"""serve-bench without a model: the metric definitions on hand-made chunk timings, the arrival
schedule, SLO parsing, the client's failure classes and the one-line errors, against a small local
HTTP server that answers the way real servers go wrong."""

from __future__ import annotations

import asyncio
import json
import math
import pathlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from harness.errors import UserError
from harness.measure.window import Window
from harness.serve.client import RequestRecord, parse_event
from harness.serve.load import Load, arrivals, run_load
from harness.serve.metrics import count_tokens, parse_slo, request_times, summarize


def record(sent, chunks, end, tokens, error=None):
    r = RequestRecord(sent=sent, chunks=list(chunks), end=end, text=["x"] * len(chunks), error=error)
    r.output_tokens, r.prompt_tokens = tokens, 10
    return r


def test_request_times_by_hand():
    # sent at 1.0 s, chunks at 1.2, 1.25, 1.35 s, stream ends at 1.4 s, 4 output tokens (one chunk held two)
    t = request_times(record(1.0, [1.2, 1.25, 1.35], 1.4, 4))
    assert t.ttft_ms == pytest.approx(200)
    assert t.e2e_ms == pytest.approx(400)
    assert t.itl_ms == pytest.approx([50, 100])
    assert t.tpot_ms == pytest.approx((1.4 - 1.2) * 1e3 / 3)  # (end - first chunk) / (tokens - 1)
    assert request_times(record(0.0, [0.1], 0.1, 1)).tpot_ms is None  # one token: no TPOT


def test_summary_goodput_and_failures_by_hand():
    recs = [
        record(0.0, [0.1, 0.2], 0.2, 2),
        record(0.0, [0.6, 0.7], 0.7, 2),  # TTFT 100 and 600 ms
        record(0.0, [], 0.3, None, error="http-500"),
        record(0.0, [], 0.3, None, error="timeout"),
    ]
    s = summarize(recs, window_s=2.0, slo={"ttft": 500}, counted_by="usage")
    assert s.ok == 2 and s.failed == {"http-500": 1, "timeout": 1}
    assert s.requests_per_s == pytest.approx(1.0) and s.output_tokens_per_s == pytest.approx(2.0)
    assert s.total_tokens_per_s == pytest.approx((20 + 4) / 2)
    assert s.goodput_rps == pytest.approx(0.5)  # one request met TTFT <= 500 ms, over 2 s
    assert s.slo_attainment == pytest.approx(1 / 4)  # failed requests count in the denominator
    assert s.ttft.p50_ms == pytest.approx(350) and s.e2e.max_ms == pytest.approx(700)
    assert summarize(recs, 2.0, {}, "usage").goodput_rps is None  # no SLO stated: no goodput


def test_tokens_counted_by_usage_else_tokenizer():
    class Tok:
        def count(self, text):
            return len(text.split())

    r = RequestRecord(sent=0.0, text=["a b", " c"], usage={"completion_tokens": 7, "prompt_tokens": 3})
    assert count_tokens(r, 99, Tok()) == "usage" and (r.output_tokens, r.prompt_tokens) == (7, 3)
    r = RequestRecord(sent=0.0, text=["a b", " c"])
    assert count_tokens(r, 5, Tok()) == "tokenizer" and (r.output_tokens, r.prompt_tokens) == (3, 5)
    assert count_tokens(RequestRecord(sent=0.0, text=["a"]), 5, None) is None
    for bad in (10**12, -5, True, 0, "7"):  # a broken server's usage: not taken as a measurement
        r = RequestRecord(sent=0.0, text=["a b"], usage={"completion_tokens": bad, "prompt_tokens": bad})
        assert count_tokens(r, 5, Tok()) == "tokenizer" and (r.output_tokens, r.prompt_tokens) == (2, 5)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("ttft=500,tpot=50", {"ttft": 500.0, "tpot": 50.0}),
        ("e2e=2000ms", {"e2e": 2000.0}),
        (None, {}),
    ],
)
def test_parse_slo(text, want):
    assert parse_slo(text) == want


@pytest.mark.parametrize("bad", ["ttft", "ttft=fast", "latency=5", "ttft=0", "ttft=1,ttft=2", "ttft=-3"])
def test_parse_slo_refuses_bad_syntax(bad):
    with pytest.raises(UserError, match="--slo"):
        parse_slo(bad)


def test_parse_event_reads_both_apis_and_refuses_malformed_lines():
    r = RequestRecord(sent=0.0)
    assert not parse_event('data: {"choices":[{"text":" Paris"}]}', "completions", r, 1.0)
    assert not parse_event('data: {"choices":[{"delta":{"role":"assistant"}}]}', "chat", r, 1.5)  # no content
    assert not parse_event('data: {"choices":[{"delta":{"content":"!"}}]}', "chat", r, 2.0)
    assert not parse_event(": keep-alive", "chat", r, 2.1) and not parse_event("", "chat", r, 2.2)
    assert not parse_event('data: {"choices":[],"usage":{"completion_tokens":2}}', "chat", r, 3.0)
    assert parse_event("data: [DONE]", "chat", r, 4.0)
    assert r.chunks == [1.0, 2.0] and r.text == [" Paris", "!"] and r.usage == {"completion_tokens": 2}
    from harness.serve.client import MalformedStream

    for line in (
        "data: {not json",
        "data: [1, 2]",
        'data: {"error": "overloaded"}',
        'data: {"choices": {"a": 1}}',
        'data: {"choices": [3]}',
        'data: {"choices": [{"delta": "x"}]}',
        'data: {"choices": [{"delta": {"content": 5}}]}',
    ):
        with pytest.raises(MalformedStream):
            parse_event(line, "chat", RequestRecord(sent=0.0), 0.0)


def test_poisson_arrivals_hit_the_requested_rate():
    """Over 1,000 Poisson arrivals the achieved rate is within 5% of the requested one (a seeded
    schedule, no wall clock); bursty arrivals over 10,000; inf sends all at once."""
    gen = arrivals(8.0, 1.0, np.random.default_rng(0))
    times = [next(gen) for _ in range(1001)]
    assert 1000 / times[-1] == pytest.approx(8.0, rel=0.05)
    gen = arrivals(8.0, 0.5, np.random.default_rng(0))  # bursty gaps vary more: the mean needs more of them
    times = [next(gen) for _ in range(10001)]
    assert 10000 / times[-1] == pytest.approx(8.0, rel=0.05)
    gaps = np.diff([next(g) for g in [arrivals(8.0, 1.0, np.random.default_rng(1))] for _ in range(2001)])
    assert np.std(gaps) / np.mean(gaps) == pytest.approx(1.0, rel=0.1)  # exponential gaps: CoV 1
    gen = arrivals(math.inf, 1.0, np.random.default_rng(0))
    assert [next(gen) for _ in range(5)] == [0.0] * 5


def fake_send(delay: float, fail_every: int = 0):
    async def send(i: int) -> RequestRecord:
        import time

        r = RequestRecord(sent=time.perf_counter())
        await asyncio.sleep(delay)
        r.chunks, r.text, r.output_tokens = [time.perf_counter()], ["x"], 1
        if fail_every and i % fail_every == 0:
            r.error = "http-500"
        r.end = time.perf_counter()
        return r

    return send


def test_closed_loop_keeps_concurrency_and_windows_by_both_minimums():
    w = Window(warmup=3, min_duration=0.05, min_iters=20)
    out = asyncio.run(run_load(fake_send(0.002), Load(concurrency=4), w, 10_000, 30.0))
    assert out.peak_in_flight == 4 and out.warmup == 3
    assert len(out.records) >= 20 and out.window_s >= 0.05 and out.stopped is None
    assert out.sent == out.warmup + len(out.records) + out.ramp_down  # nothing dropped


def test_every_loop_is_bounded_in_requests_and_time():
    w = Window(warmup=0, min_duration=100.0, min_iters=10**6)
    out = asyncio.run(run_load(fake_send(0.001), Load(concurrency=2), w, 25, 30.0))
    assert out.sent == 25 and out.stopped == "max requests"
    out = asyncio.run(run_load(fake_send(0.001), Load(rate=math.inf, max_concurrency=3), w, 25, 30.0))
    assert out.sent == 25 and out.peak_in_flight <= 3 and out.stopped == "max requests"
    out = asyncio.run(run_load(fake_send(0.01), Load(concurrency=2), w, 10**6, 0.2))
    assert out.stopped == "max duration" and out.window_s < 1.0


def test_ramp_down_and_errors_are_bounded_and_recorded():
    """A request that never ends after the window closed is cancelled at --max-duration and counted;
    an exception inside a request is recorded as a failure, never lost."""
    import time

    async def send(i: int) -> RequestRecord:
        if i >= 6:
            await asyncio.sleep(3600)  # a stream that never finishes
        if i == 4:
            raise KeyError("choices")
        r = RequestRecord(sent=time.perf_counter(), chunks=[time.perf_counter()], text=["x"])
        r.output_tokens, r.end = 1, time.perf_counter()
        return r

    w = Window(warmup=0, min_duration=0.0, min_iters=5)
    t0 = time.perf_counter()
    out = asyncio.run(run_load(send, Load(concurrency=3), w, 100, 1.0))
    assert time.perf_counter() - t0 < 10 and out.cancelled >= 1
    assert [r.error for r in out.records].count("client-error") == 1


def test_failed_requests_are_counted_not_dropped():
    w = Window(warmup=0, min_duration=0.0, min_iters=30)
    out = asyncio.run(run_load(fake_send(0.001, fail_every=3), Load(concurrency=3), w, 10_000, 30.0))
    s = summarize(out.records, out.window_s, {}, "usage")
    assert s.failed["http-500"] == sum(not r.ok for r in out.records) > 0
    assert s.ok + s.failed["http-500"] == len(out.records)


# -- a local server that answers the ways real servers go wrong


def chunk(text: str, usage: bool = False) -> bytes:
    event = {"choices": [{"index": 0, "text": text}]} | ({"usage": {"completion_tokens": 3}} if usage else {})
    return f"data: {json.dumps(event)}\n\n".encode()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        mode = self.server.mode
        if mode in (401, 404, 500):
            self.send_response(mode)
            self.end_headers()
            self.wfile.write(b'{"error": "no"}')
            return
        self.send_response(200)
        self.send_header("content-type", "application/json" if mode == "json" else "text/event-stream")
        self.end_headers()
        if mode == "json":
            self.wfile.write(b'{"choices": [{"text": "hi"}]}')
        elif mode == "malformed":
            self.wfile.write(chunk("a") + b"data: {oops\n\n")
        elif mode == "no-usage":
            self.wfile.write(chunk("a") + chunk("b") + b"data: [DONE]\n\n")
        else:
            self.wfile.write(chunk("a") + chunk("b") + chunk("c", usage=True))  # no [DONE], as transformers serve


@pytest.fixture
def fake_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.mode = "ok"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def serve_bench(invoke, url, tmp_path, *args):
    argv = [
        "serve-bench",
        url,
        "--model",
        "m",
        "--prompts",
        str(tmp_path / "p.txt"),
        "--out",
        str(tmp_path / "r"),
        "--min-duration",
        "0",
        "--min-requests",
        "4",
        "--warmup",
        "1",
        *args,
    ]
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "p.txt").write_text("1 2 3\n4 5 6\n")  # token-id prompts: no tokenizer needed
    return invoke(*argv)


@pytest.mark.parametrize(
    ("mode", "text"),
    [
        (401, "http-401"),
        (404, "wrong --model name"),
        (500, "http-500"),
        ("json", "not-streaming"),
        ("malformed", "malformed-stream"),
        ("no-usage", "give --tokenizer"),
    ],
)
def test_server_mistakes_are_one_line(invoke, fake_server, tmp_path, mode, text):
    fake_server.mode = mode
    r = serve_bench(invoke, f"http://127.0.0.1:{fake_server.server_port}", tmp_path)
    assert r.exit_code == 2 and text in r.output and "Traceback" not in r.output, r.output
    assert not list((tmp_path / "r").glob("*.json"))  # refused before any result file


def test_fake_server_run_writes_a_valid_result(invoke, fake_server, tmp_path):
    from harness.results.schema import read_result

    r = serve_bench(
        invoke,
        f"http://127.0.0.1:{fake_server.server_port}",
        tmp_path,
        "--concurrency",
        "1,2",
        "--request-rate",
        "200",
        "--slo",
        "ttft=1000",
    )
    assert r.exit_code == 0, r.output
    (f,) = (tmp_path / "r").glob("*.json")
    res = read_result(f)
    assert res.status == "complete" and len(res.points) == 3
    for p in res.points:
        assert p.engine == "served" and p.status == "ok" and p.served["token_counts"] == "usage"
        assert p.output_tokens_mean == 3 and p.served["requests"]["failed"] == {}
        assert p.served["goodput_rps"] == pytest.approx(p.requests_per_s)
    assert res.config["api_key"] is None


def test_api_key_is_sent_and_never_recorded(invoke, fake_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MP_TEST_KEY", "sk-secret-123")
    r = serve_bench(invoke, f"http://127.0.0.1:{fake_server.server_port}", tmp_path, "--api-key-env", "MP_TEST_KEY")
    assert r.exit_code == 0, r.output
    (f,) = (tmp_path / "r").glob("*.json")
    assert "sk-secret-123" not in f.read_text() and "from $MP_TEST_KEY" in f.read_text()


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--concurrency", "0"], "concurrency must be a positive integer"),
        (["--request-rate", "fast"], "--request-rate must be a number"),
        (["--request-rate", "-1"], "--request-rate must be > 0"),
        (["--slo", "ttft=abc"], "--slo takes KEY=MS"),
        (["--find-rate"], "add --slo"),
        (["--api", "grpc"], "unknown --api"),
        (["--request-rate", "1", "--burstiness", "0"], "--burstiness must be"),
        (["--request-rate", "1e-300"], "--request-rate must be"),
        (["--burstiness", "2"], "add --request-rate or --find-rate"),
        (["--request-rate", "1", "--max-concurrency", "0"], "--max-concurrency must be"),
        (["--slo-attainment", "0.5"], "add --slo"),
        (["--min-requests", "0"], "--min-requests must be"),
        (["--precision", "bf17"], "unknown --precision"),
        (["--api-key-env", "sk-abc123"], "give the variable's name, not the key"),
    ],
)
def test_bad_options_are_one_line(invoke, tmp_path, args, text):
    r = serve_bench(invoke, "http://127.0.0.1:9", tmp_path, *args)
    assert r.exit_code == 2 and text in r.output and "Traceback" not in r.output, r.output


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("127.0.0.1:8000", "URL must look like http://HOST:PORT"),
        ("http://127.0.0.1:8000/v1/completions", "base URL, not an endpoint path"),
        ("http://127.0.0.1:9", "cannot reach"),  # nothing listens on the discard port
        ("http://127.0.0.1:99999", "not a valid URL"),
        ("http://127.0.0.1:abc", "not a valid URL"),
        ("http://[::1:9100", "not a valid URL"),
        ("http://alice:secret@127.0.0.1:9", "takes no credentials"),
        ("http://127.0.0.1:9/?api_key=sk-1", "takes no credentials"),
    ],
)
def test_bad_urls_are_one_line(invoke, tmp_path, url, text):
    r = serve_bench(invoke, url, tmp_path)
    assert r.exit_code == 2 and text in r.output and "Traceback" not in r.output, r.output


def test_synthetic_prompts_need_a_tokenizer(invoke, tmp_path):
    r = invoke("serve-bench", "http://127.0.0.1:9", "--model", "m", "--out", tmp_path)
    assert r.exit_code == 2 and "need the model's tokenizer" in r.output, r.output


def test_served_points_go_through_report_compare_and_claim(invoke, fake_server, tmp_path):
    """A served result is read by report (a row beside in-process points), compare (paired by load)
    and claim, with no option of theirs changed."""
    url = f"http://127.0.0.1:{fake_server.server_port}"
    for run in ("a", "b"):
        r = serve_bench(invoke, url, tmp_path / run, "--concurrency", "2")
        assert r.exit_code == 0, r.output
    a, b = (next((tmp_path / run / "r").glob("*.json")) for run in ("a", "b"))
    r = invoke("report", a, "-o", tmp_path / "report")
    assert r.exit_code == 0, r.output
    csv = (tmp_path / "report" / "metrics.csv").read_text()
    assert "served (completions)" in csv and "served, concurrency 2" in csv
    r = invoke("compare", a, b)
    assert r.exit_code == 0 and "served" in r.output, r.output
    r = invoke("claim", pathlib.Path(__file__).parent.parent / "claims" / "public-claims.toml", a, "--steps")
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    # the served point is read, and cannot bound a claim without the server's precision: said so
    assert "m served" in r.output and "the server's precision is not known" in r.output, r.output


@pytest.mark.parametrize(("prompt", "out"), [(1, 0), (1, 1), (5, 2), (17, 9), (128, 64)])
def test_generation_flops_closed_form_equals_the_per_token_sums(prompt, out):
    from models.llm.config import LLM_CONFIGS
    from models.llm.flops import decode_flops, generation_flops, prefill_flops

    cfg = LLM_CONFIGS["qwen2-0.5b"]
    want = prefill_flops(cfg, prompt) + sum(decode_flops(cfg, prompt + i + 1) for i in range(1, out))
    assert generation_flops(cfg, prompt, out) == want
