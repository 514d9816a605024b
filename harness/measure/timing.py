"""Timing primitives every measurement shares (docs/measurement.md, "Timing").

- `device_sync`: GPU work is asynchronous; no timer is read before the device has finished.
- `window_closed` (defined in window.py, torch-free): a measurement window ends only when BOTH its
  minimum duration and its minimum count are met. Every timed loop in modelpower (vision windows,
  LLM generations, ONNX files, GEMM peaks, kernel benchmarks, LoadGen calibration) asks this one
  function.
- `repeat_timed`: the per-call times of a function called until such a window closes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from harness.measure.window import window_closed


def device_sync(device: torch.device | None) -> None:
    """Wait for the work queued on `device` (a no-op on the CPU, whose work is synchronous)."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def stream_sync(device: torch.device | None) -> None:
    """Wait for the work queued on the current stream of `device` only (other streams, such as an
    upload in flight on a copy stream, keep going); a no-op on the CPU."""
    if device is not None and device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()


def repeat_timed(
    fn: Callable[[], object], min_duration: float, min_iters: int, device: torch.device | None = None
) -> list[float]:
    """Seconds of each call of `fn` (the device synchronized before each timer read), repeated
    until the window closes. The caller runs any warm-up call first."""
    times: list[float] = []
    t0 = time.perf_counter()
    while not window_closed(t0, len(times), min_duration, min_iters):
        t = time.perf_counter()
        fn()
        device_sync(device)
        times.append(time.perf_counter() - t)
    return times
