"""One streamed request to an OpenAI-compatible server, timed on the client's clock.

One request function per protocol shape (`/v1/completions`, `/v1/chat/completions`), as vLLM's
benchmarks/lib/endpoint_request_func.py has: the payload differs, the stream is read the same way.
A timestamp is taken when the request is sent, at every received chunk that carries content, and
at the end of the stream. The stream ends at `data: [DONE]` or when the server closes it (some
servers, `transformers serve` among them, send no [DONE]). The server's `usage` is kept when it
sends one (with `stream_options.include_usage`).

A failed request is recorded with its class (`http-<status>`, `timeout`, `connect`, `disconnect`,
`malformed-stream`, `not-streaming`, `empty`), never dropped: the caller counts it.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx

APIS = ("completions", "chat")
PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


@dataclass
class Prompt:
    """What one request sends: text (or token ids for /v1/completions) and the output it asks for."""

    text: str | list[int]
    prompt_tokens: int | None  # counted by our tokenizer, or the ids' length; None: unknown
    output_len: int


@dataclass
class RequestRecord:
    """One request as the client saw it (times: time.perf_counter seconds)."""

    sent: float
    chunks: list[float] = field(default_factory=list)  # each chunk that carried content
    end: float | None = None
    text: list[str] = field(default_factory=list)  # the content of each chunk, in order
    usage: dict | None = None  # the server's token counts, if it sent them
    error: str | None = None  # the failure class; None: the request succeeded
    detail: str | None = None  # the failure in one line
    prompt_tokens: int | None = None  # as counted (usage, else our tokenizer)
    output_tokens: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def payload(api: str, model: str, prompt: Prompt, ignore_eos: bool) -> dict:
    """The JSON body of a streamed request. `ignore_eos` asks for exactly `output_len` tokens in the
    way vLLM and SGLang accept it (`ignore_eos`, `min_tokens`); servers that stop at EOS anyway are
    measured on the tokens they really stream."""
    body: dict = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": prompt.output_len,
        "temperature": 0.0,
    }
    if api == "chat":
        body["messages"] = [{"role": "user", "content": prompt.text}]
    else:
        body["prompt"] = prompt.text
    if ignore_eos:
        body["ignore_eos"] = True
        body["min_tokens"] = prompt.output_len
    return body


def parse_event(line: str, api: str, rec: RequestRecord, now: float) -> bool:
    """Read one line of a server-sent-event stream into `rec`; True at `data: [DONE]`. The hot path
    of the client: one JSON parse and a timestamp per content chunk."""
    if not line.startswith("data:"):
        return False  # blank separators, comments (":"), "event:" lines
    data = line[5:].strip()
    if data == "[DONE]":
        return True
    try:
        event = json.loads(data)
    except ValueError:
        raise MalformedStream(f"not JSON: {data[:80]!r}") from None
    if not isinstance(event, dict):
        raise MalformedStream(f"not a JSON object: {data[:80]!r}")
    if event.get("error"):
        raise MalformedStream(f"error event: {str(event['error'])[:120]}")
    usage = event.get("usage")
    if isinstance(usage, dict):
        rec.usage = usage
    choices = event.get("choices") or []
    if not isinstance(choices, list) or (choices and not isinstance(choices[0], dict)):
        raise MalformedStream(f"'choices' is not a list of objects: {data[:80]!r}")
    if choices:
        c = choices[0]
        delta = c.get("delta") or {}
        if api == "chat" and not isinstance(delta, dict):
            raise MalformedStream(f"'delta' is not an object: {data[:80]!r}")
        text = delta.get("content") if api == "chat" else c.get("text")
        if text is not None and not isinstance(text, str):
            raise MalformedStream(f"the content is not text: {data[:80]!r}")
        if text:
            rec.chunks.append(now)
            rec.text.append(text)
    return False


class MalformedStream(Exception):
    """A line of the stream that is not a server-sent event of this API."""


async def send(client: httpx.AsyncClient, url: str, api: str, body: dict, headers: dict) -> RequestRecord:
    """Send one streamed request and read it to the end; failures are recorded, not raised."""
    clock = time.perf_counter
    rec = RequestRecord(sent=clock())
    try:
        async with client.stream("POST", url + PATHS[api], json=body, headers=headers) as r:
            if r.status_code != 200:
                text = (await r.aread()).decode("utf-8", "replace")
                rec.error, rec.detail = f"http-{r.status_code}", " ".join(text.split())[:200]
                if r.is_redirect:
                    rec.detail = f"redirected to {r.headers.get('location', '?')}: give that URL"
                return _ended(rec)
            kind = r.headers.get("content-type", "")
            if "text/event-stream" not in kind.lower():
                rec.error, rec.detail = "not-streaming", f"content-type {kind or 'missing'}, not text/event-stream"
                return _ended(rec)
            done = False
            async for line in r.aiter_lines():
                if not done and parse_event(line, api, rec, clock()):
                    done, rec.end = True, clock()  # read on to the end: the connection is then reused
    except MalformedStream as e:
        rec.error, rec.detail = "malformed-stream", str(e)
    except httpx.TimeoutException as e:
        rec.error, rec.detail = "timeout", type(e).__name__
    except httpx.ConnectError as e:
        rec.error, rec.detail = "connect", str(e)[:200] or type(e).__name__
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
        rec.error, rec.detail = "disconnect", str(e)[:200] or type(e).__name__
    except httpx.HTTPError as e:
        rec.error, rec.detail = "http-error", str(e)[:200] or type(e).__name__
    if rec.error is None and not rec.chunks:
        rec.error, rec.detail = "empty", "the stream carried no content"
    return _ended(rec)


def _ended(rec: RequestRecord) -> RequestRecord:
    if rec.end is None:
        rec.end = time.perf_counter()
    return rec


async def send_within(
    client: httpx.AsyncClient, url: str, api: str, body: dict, headers: dict, timeout: float
) -> RequestRecord:
    """`send`, bounded in total time: a server that keeps the stream alive without finishing (keep-alive
    comments, endless text) is a `timeout` after `timeout` seconds, as a silent one is."""
    sent = time.perf_counter()
    try:
        return await asyncio.wait_for(send(client, url, api, body, headers), timeout)
    except TimeoutError:
        rec = RequestRecord(sent=sent, error="timeout", detail=f"not finished after {timeout:g} s")
        return _ended(rec)
