"""Latency statistics as docs/measurement.md defines them: count, mean, min, p50/p90/p95/p99, max, stdev, CoV."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HIGH_COV = 0.10  # a series whose stdev exceeds 10% of its mean is flagged "high_cov"


@dataclass
class LatencyStats:
    count: int
    mean_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    stdev_ms: float
    cov: float  # coefficient of variation: stdev / mean

    @property
    def high_cov(self) -> bool:
        return self.cov > HIGH_COV


def latency_stats(seconds: list[float] | np.ndarray) -> LatencyStats:
    """Statistics of a series of durations in seconds, reported in milliseconds.

    Percentiles use linear interpolation between order statistics (NumPy's default); stdev is the
    sample standard deviation (ddof=1), 0 for a single value.
    """
    a = np.asarray(seconds, dtype=np.float64) * 1e3
    if a.size == 0:
        raise ValueError("latency_stats: empty series")
    mean = float(a.mean())
    stdev = float(a.std(ddof=1)) if a.size > 1 else 0.0
    p50, p90, p95, p99 = (float(v) for v in np.percentile(a, [50, 90, 95, 99]))
    return LatencyStats(
        count=int(a.size),
        mean_ms=mean,
        min_ms=float(a.min()),
        p50_ms=p50,
        p90_ms=p90,
        p95_ms=p95,
        p99_ms=p99,
        max_ms=float(a.max()),
        stdev_ms=stdev,
        cov=stdev / mean if mean > 0 else 0.0,
    )
