"""Load shapes as evaluators use them, bounded and windowed like every other benchmark here.

- Closed loop (`concurrency`): that many requests in flight; each completion sends the next.
- Open loop (`rate` requests/s): arrivals at gamma-distributed gaps (shape = burstiness; 1 is a
  Poisson process, as vLLM's `--burstiness`), `inf` sends everything at once; at most
  `max_concurrency` in flight, later arrivals wait for a slot.

The window (harness/measure/window.py's rules): the first `warmup` completions are warm-up; the
measured window starts when the last of them completes and ends at the first completion after
which both `min_duration` seconds and `min_iters` requests have passed. Requests still in flight
then are awaited and left out (ramp-down). Every run is bounded: at most `max_requests` sent and
`max_duration` seconds (requests still in flight then are cancelled and counted); a bound that
ends the window early is said in `stopped`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from harness.errors import first_line
from harness.measure.window import Window
from harness.serve.client import RequestRecord


@dataclass(frozen=True)
class Load:
    """One load point: closed loop at `concurrency`, or open loop at `rate` requests/s."""

    concurrency: int | None = None
    rate: float | None = None  # math.inf: every request at once
    burstiness: float = 1.0  # gamma shape of the arrival gaps; 1: Poisson
    max_concurrency: int | None = None  # open loop: in-flight cap

    def describe(self) -> str:
        if self.concurrency is not None:
            return f"concurrency {self.concurrency}"
        rate = "inf" if math.isinf(self.rate) else f"{self.rate:g}/s"
        cap = f", at most {self.max_concurrency} in flight" if self.max_concurrency else ""
        shape = "" if self.burstiness == 1.0 else f", burstiness {self.burstiness:g}"
        return f"rate {rate}{shape}{cap}"

    def to_dict(self) -> dict:
        if self.concurrency is not None:
            return {"shape": "closed loop", "concurrency": self.concurrency}
        return {
            "shape": "open loop",
            "rate_rps": None if math.isinf(self.rate) else self.rate,
            "arrivals": "all at once" if math.isinf(self.rate) else "gamma",
            "burstiness": self.burstiness,
            "max_concurrency": self.max_concurrency,
        }


def arrivals(rate: float, burstiness: float, rng: np.random.Generator) -> Iterator[float]:
    """Send times in seconds from the start: gaps drawn from a gamma distribution of mean 1/rate and
    shape `burstiness` (1: exponential gaps, a Poisson process); all 0 for an infinite rate."""
    t = 0.0
    while True:
        yield t
        if not math.isinf(rate):
            t += float(rng.gamma(burstiness, 1.0 / (rate * burstiness)))


@dataclass
class Outcome:
    """What one load point measured."""

    records: list[RequestRecord]  # completed inside the window (failed ones too)
    window_s: float
    sent: int  # every request sent, warm-up and ramp-down included
    warmup: int
    ramp_down: int  # in flight when the window closed: awaited, left out
    peak_in_flight: int
    offered_rps: float | None  # open loop: arrivals sent per second while the schedule ran
    stopped: str | None = None  # "max requests" or "max duration" if a bound closed the window
    all_records: list[RequestRecord] = field(default_factory=list)
    cancelled: int = 0  # still in flight at the time bound: cancelled, counted here

    @property
    def t_never_opened(self) -> bool:
        return self.stopped is not None and self.stopped.startswith("the window never opened")


class _Run:
    """The state of one load point while it runs (one event loop, no threads)."""

    def __init__(
        self,
        send: Callable[[int], Awaitable[RequestRecord]],
        window: Window,
        max_requests: int,
        progress: Callable[[int, int, float], None] | None,
        meter,
    ):
        self.send, self.window, self.max_requests, self.progress = send, window, max_requests, progress
        self.meter = meter  # start() when the window opens, stop() when it closes
        self.t0 = time.perf_counter()
        self.t_start: float | None = None
        if not window.warmup:
            self.open(self.t0)
        self.t_end: float | None = None
        self.sent = self.warm = self.ramp = self.in_flight = self.peak = 0
        self.measured: list[RequestRecord] = []
        self.everything: list[RequestRecord] = []
        self.tasks: set[asyncio.Task] = set()
        self.idle = asyncio.Event()
        self.stopped: str | None = None
        self.refill = False  # closed loop: each completion sends the next request

    @property
    def closed(self) -> bool:
        return self.t_end is not None

    def launch(self, slot: asyncio.Semaphore | None = None) -> bool:
        """Send the next request; False when the bound on requests is reached."""
        if self.closed or self.sent >= self.max_requests:
            return False
        i, self.sent = self.sent, self.sent + 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.idle.clear()
        task = asyncio.ensure_future(self._one(i, slot))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def _one(self, i: int, slot: asyncio.Semaphore | None) -> RequestRecord:
        try:
            rec = await self.send(i)
        except Exception as e:  # a bug on our side or a reply no check foresaw: recorded, never lost
            rec = RequestRecord(sent=time.perf_counter(), error="client-error", detail=first_line(e))
            rec.end = rec.sent
        finally:
            self.in_flight -= 1
            if slot is not None:
                slot.release()
        self.completed(rec)
        if self.refill:
            self.launch()
        if self.in_flight == 0:
            self.idle.set()
        return rec

    def completed(self, rec: RequestRecord) -> None:
        now = rec.end or time.perf_counter()
        self.everything.append(rec)
        if self.closed:
            self.ramp += 1
            return
        if self.t_start is None:
            self.warm += 1
            if self.warm >= self.window.warmup:
                self.open(now)
        else:
            self.measured.append(rec)
            if len(self.measured) >= self.window.min_iters and now - self.t_start >= self.window.min_duration:
                self.close(None, now)
        if self.progress and self.t_start is not None:
            self.progress(len(self.measured), sum(not r.ok for r in self.measured), now - self.t_start)

    def open(self, now: float) -> None:
        self.t_start = now
        if self.meter is not None:
            self.meter.start()

    def close(self, why: str | None, now: float | None = None) -> None:
        if not self.closed:
            self.t_end = now or time.perf_counter()
            self.stopped = why
            if self.meter is not None and self.t_start is not None:
                self.meter.stop()


async def run_load(
    send: Callable[[int], Awaitable[RequestRecord]],
    load: Load,
    window: Window,
    max_requests: int,
    max_duration: float,
    seed: int = 0,
    progress: Callable[[int, int, float], None] | None = None,
    meter=None,
) -> Outcome:
    """Drive `send(i)` (the i-th request) under `load` until the window closes or a bound is hit;
    `meter.start()` / `meter.stop()` bracket the measured window."""
    run = _Run(send, window, max_requests, progress, meter)
    offered = None

    async def closed_loop() -> None:
        run.refill = True
        for _ in range(load.concurrency):
            run.launch()
        await run.idle.wait()
        run.close("max requests")  # idle before the window closed: every request allowed was sent

    async def open_loop() -> None:
        nonlocal offered
        slot = asyncio.Semaphore(load.max_concurrency) if load.max_concurrency else None
        rng = np.random.default_rng(seed)
        start = time.perf_counter()
        for at in arrivals(load.rate, load.burstiness, rng):
            delay = start + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if slot is not None:
                await slot.acquire()
            if not run.launch(slot):
                if slot is not None:
                    slot.release()
                break
        elapsed = time.perf_counter() - start
        offered = run.sent / elapsed if elapsed > 0 and not math.isinf(load.rate) else None
        if run.in_flight:
            await run.idle.wait()
        run.close("max requests")  # a no-op if the window closed before the schedule ended

    driver = closed_loop() if load.concurrency is not None else open_loop()
    try:
        await asyncio.wait_for(driver, timeout=max_duration)
    except TimeoutError:
        run.close("max duration")
    cut = len(run.tasks)  # still in flight at --max-duration: cancelled, left out of the window
    for task in list(run.tasks):
        task.cancel()
    if run.tasks:
        await asyncio.gather(*run.tasks, return_exceptions=True)
    if run.t_start is None:
        run.stopped = "the window never opened (every request was warm-up)"
    window_s = 0.0 if run.t_start is None else max(0.0, (run.t_end or time.perf_counter()) - run.t_start)
    return Outcome(
        run.measured, window_s, run.sent, run.warm, run.ramp, run.peak, offered, run.stopped, run.everything, cut
    )
