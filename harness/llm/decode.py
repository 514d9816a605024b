"""The decode loop's device machinery: per-token timestamps, and the decode step as one CUDA graph.

Timestamps (`clock_for`):
- CPU (`HostClock`): the work is synchronous; each token's time is read when its sampling returns.
- CUDA (`EventClock`): a CUDA event is recorded on the stream after each token's sampling, and all
  are read after the generation, with one synchronize per generation instead of one per token, so
  the host keeps queueing work ahead of the GPU. Token i's time is t0 + (event_i - event_0), where
  t0 is read on the host right after a synchronize and event_0 is recorded at once on the idle
  stream: both mark the start of the prefill (to the event's resolution, about a microsecond).

CUDA graphs (`DecodeGraph`): embedding, every layer, the LM head, our sampling kernel, feeding the
token back and advancing the position, captured once per (batch, cache length, padded or not) and
replayed for each token. The inputs live in static buffers (token, position, step counter, left
padding); the Numba sampling kernel launches on torch's current stream, which is the capturing
stream, and reads its step from device memory. A capture that fails falls back to the eager step,
and the point says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from harness.errors import first_line
from harness.measure.memory import is_oom
from harness.measure.timing import device_sync


class HostClock:
    """Host timestamps; the device is synchronized before each is read."""

    kind = "host clock after a device synchronize per token"

    def __init__(self, device: torch.device):
        self.device, self.t0, self.stamps = device, 0.0, []

    def start(self) -> None:
        device_sync(self.device)
        self.t0 = time.perf_counter()

    def mark(self) -> None:
        device_sync(self.device)
        self.stamps.append(time.perf_counter())

    def read(self) -> tuple[float, list[float]]:
        return self.t0, self.stamps


class EventClock:
    """CUDA events recorded on the stream, read after the generation (see the module docstring).
    `event` and `sync` are injectable so that the arithmetic is testable without a GPU."""

    kind = "CUDA events on the stream, one synchronize per generation"

    def __init__(self, n: int, event: Callable | None = None, sync: Callable | None = None):
        event = event or (lambda: torch.cuda.Event(enable_timing=True))
        self.sync = sync or torch.cuda.synchronize
        self.e0, self.events, self.k, self.t0 = event(), [event() for _ in range(n)], 0, 0.0

    def start(self) -> None:
        self.sync()
        self.t0 = time.perf_counter()
        self.e0.record()

    def mark(self) -> None:
        self.events[self.k].record()
        self.k += 1

    def read(self) -> tuple[float, list[float]]:
        self.sync()
        return self.t0, [self.t0 + self.e0.elapsed_time(e) / 1e3 for e in self.events[: self.k]]


def clock_for(device: torch.device, n: int):
    """The clock of a generation of `n` tokens on `device`."""
    return EventClock(n) if device.type == "cuda" else HostClock(device)


def cuda_capture(body: Callable[[], None], reset: Callable[[], None], device: torch.device) -> Callable[[], None]:
    """`body` captured as a CUDA graph; returns its replay. Two warm-up runs on a side stream first
    (Numba loads its module, cuBLAS and the allocator settle), as torch.cuda.graph requires; `reset`
    puts the static inputs back before each (a step advances the position)."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(2):
            reset()
            body()
    reset()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()
    return graph.replay


class DecodeGraph:
    """One decode step with static inputs: `begin` loads a generation's first token, position and
    padding; each `replay` decodes one token into `sampled` and feeds it back on the device.

    `capture(body, reset)` returns the replay function: `cuda_capture` on a GPU; a test passes
    `lambda body, reset: body` to run the same bookkeeping eagerly on the CPU."""

    def __init__(
        self,
        decode: Callable,
        sample: Callable,
        batch: int,
        cache_len: int,
        padded: bool,
        device: torch.device,
        capture: Callable | None = None,
    ):
        self.decode, self.sample = decode, sample
        self.tok = torch.zeros((batch, 1), dtype=torch.long, device=device)
        self.sampled = torch.zeros(batch, dtype=torch.long, device=device)
        self.pad = torch.zeros(batch, dtype=torch.long, device=device) if padded else None
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        self.step = torch.ones(1, dtype=torch.long, device=device)
        self.last = cache_len - 1
        capture = capture or (lambda body, reset: cuda_capture(body, reset, device))
        self.replay = capture(self._body, self._reset)

    def _reset(self) -> None:
        """Warm-up state: the KV cache is written at the last slot only, which no step reads before
        the generation that reaches it writes it again (slots after the position are masked)."""
        self.tok.zero_()
        self.pos.fill_(self.last)
        self.step.fill_(1)

    def _body(self) -> None:
        logits = self.decode(self.tok, self.pos, self.pad, True)
        self.sample(logits[:, -1], self.step, self.sampled)
        self.tok.copy_(self.sampled.clamp(min=0).view(-1, 1))  # -1 (no valid logit) is recorded, not fed back
        self.pos.add_(1)
        self.step.add_(1)

    def begin(self, first: torch.Tensor, pos: int, pad: torch.Tensor | None) -> None:
        """Load a generation: its first sampled token (already clamped), the cache slot that token
        goes to, and its left padding."""
        self.tok.copy_(first.view(-1, 1))
        self.pos.fill_(pos)
        self.step.fill_(1)
        if self.pad is not None:
            self.pad.copy_(pad)


class DecodeGraphs:
    """The captured decode steps of one measured point, by shape and sampling settings. The first
    capture that fails turns graphs off for the point (`off` says why); the step then runs eagerly."""

    def __init__(self, capture: Callable | None = None):
        self.capture, self.graphs, self.off = capture, {}, None

    def get(self, key: tuple, make: Callable[[Callable | None], DecodeGraph]) -> DecodeGraph | None:
        if self.off is not None:
            return None
        if key not in self.graphs:
            try:
                self.graphs[key] = make(self.capture)
            except Exception as e:
                if is_oom(e):
                    raise
                self.off = f"{type(e).__name__}: {first_line(e)}"
                return None
        return self.graphs[key]

    def describe(self, eager: str = "eager") -> str:
        """What ran the decode step; `eager`: the name of the step without a graph."""
        if self.off is not None:
            return f"{eager} (CUDA graph capture failed: {self.off})"
        if not self.graphs:  # one-token generations have no decode step
            return eager
        return "one CUDA graph per shape: model, sampling kernel, token feedback"


__all__ = ["DecodeGraph", "DecodeGraphs", "EventClock", "HostClock", "clock_for", "cuda_capture"]
