"""A measurement window's rules, one copy for every benchmark: warm-up excluded, and the window
ends only when both a minimum duration and a minimum count are met (MLPerf LoadGen's rule).
`timed_window` is the loop that runs such a window, call by call, the energy meter bracketing it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from harness.inputs import check_number
from harness.measure.energy import EnergyReading, Meter

R = TypeVar("R")
Progress = Callable[[str, float, int], None]  # (phase, elapsed_s, iterations)

MAX_WINDOW_S = 86_400.0  # a window of more than a day is a typo, not a benchmark (MLPerf: 600 s)


@dataclass(frozen=True)
class Window:
    """Warm-up iterations (excluded), then at least `min_duration` seconds AND `min_iters` iterations."""

    warmup: int = 2
    min_duration: float = 5.0
    min_iters: int = 10

    def check(self) -> Window:
        """One line naming the flag for a value out of range; the window itself otherwise."""
        check_number("--warmup", self.warmup, 0)
        check_number("--min-duration", self.min_duration, 0, MAX_WINDOW_S)
        check_number("--min-iters", self.min_iters, 1)
        return self


def window_closed(t0: float, n: int, min_duration: float, min_iters: int) -> bool:
    """True once `n` >= `min_iters` AND at least `min_duration` seconds have passed since `t0`."""
    return n >= min_iters and time.perf_counter() - t0 >= min_duration


@dataclass
class WindowRun(Generic[R]):
    """What `timed_window` measured: each call's result and seconds, the window's seconds (from its
    opening to its close) and the meter's reading over exactly that window."""

    results: list[R]  # every timed call's result, in order (keep=False: only the last one)
    times: list[float]  # seconds of each timed call
    seconds: float
    reading: EnergyReading


def timed_window(
    step: Callable[[int], R],
    window: Window,
    meter: Meter,
    progress: Progress | None = None,
    phase: str = "window",
    keep: bool = True,
) -> WindowRun[R]:
    """`window.warmup` untimed calls of `step`, then timed calls until `window` closes, the meter
    started as it opens and stopped as it closes. `step(i)` gets the call's index (warm-up calls and
    timed calls each count from 0); `progress(phase, elapsed_s, calls)` is told after every timed
    call, before the window's close is checked. `keep`: hold every call's result (False: the last)."""
    for i in range(window.warmup):
        step(i)
    meter.start()
    results: list[R] = []
    times: list[float] = []
    t_window = time.perf_counter()
    while True:
        t = time.perf_counter()
        result = step(len(times))
        times.append(time.perf_counter() - t)
        if not keep:
            results.clear()
        results.append(result)
        if progress:
            progress(phase, time.perf_counter() - t_window, len(times))
        if window_closed(t_window, len(times), window.min_duration, window.min_iters):
            break
    seconds = time.perf_counter() - t_window
    return WindowRun(results, times, seconds, meter.stop())
