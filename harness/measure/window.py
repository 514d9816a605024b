"""A measurement window's rules, one copy for every benchmark: warm-up excluded, and the window
ends only when both a minimum duration and a minimum count are met (MLPerf LoadGen's rule)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.inputs import check_number

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
