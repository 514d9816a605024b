"""Energy meters: joules over exactly the timed window, with scope and method. One registry.

- `nvml`: a GPU's total-energy counter (Volta and newer), scope "device" (the board). Where the
  counter is missing, or did not move over the window (shorter than its update period), the
  integral of power sampled at >= 10 Hz is used instead. Clocks and throttle reasons are sampled
  over the window too. Idle power is read before the run.
- `rapl`: the CPU packages' counters in powercap sysfs (intel-rapl:N, also used for AMD), scope
  "package", with counter wrap-around handled.
- `assumed`: watts the user passed (--assume-watts) x window time, labelled an estimate everywhere.
- `none`: energy "not measured".
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")
SAMPLE_HZ = 20.0


@dataclass
class EnergyReading:
    measured: bool  # True: a counter read it; False: not measured (joules None) or an estimate (below)
    joules: float | None  # None: no figure at all; with `estimate`, the user's watts x the window
    window_s: float
    scope: str  # "device", "package", "wall" or "none"
    method: str
    estimate: bool = False  # True only for --assume-watts
    idle_w: float | None = None
    samples: int | None = None
    clocks: dict = field(default_factory=dict)  # GPU: SM clock min/max over the window, throttle reasons

    @property
    def avg_w(self) -> float | None:
        return self.joules / self.window_s if self.joules is not None and self.window_s > 0 else None

    def flags(self) -> list[str]:
        """The result flags this window earns: the GPU throttled in it; its energy is an estimate."""
        return [f for f, on in (("throttled", self.clocks.get("throttled")), ("energy_estimated", self.estimate)) if on]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["avg_w"] = self.avg_w
        return d


class PowerSampler:
    """Samples a power source (W) on a thread and integrates it (trapezoid) over start()..stop()."""

    def __init__(self, read_watts: Callable[[], float], hz: float = SAMPLE_HZ, extra: Callable[[], dict] | None = None):
        if hz < 10:
            raise ValueError("power must be sampled at >= 10 Hz")
        self.read_watts, self.period, self.extra = read_watts, 1.0 / hz, extra
        self.samples: list[tuple[float, float]] = []
        self.extras: list[dict] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        self.samples.append((time.perf_counter(), float(self.read_watts())))
        if self.extra:
            self.extras.append(self.extra())

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():  # a window that ended in an error
            self._stop.set()
            self._thread.join()
        self.samples, self.extras = [], []
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> tuple[float, float, int]:
        """(joules, seconds covered, number of samples)."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._sample()
        return integrate(self.samples), self.samples[-1][0] - self.samples[0][0], len(self.samples)


def integrate(samples: list[tuple[float, float]]) -> float:
    """Trapezoidal integral of (time s, power W) samples, in joules."""
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in itertools.pairwise(samples))


def counter_delta(start: int, end: int, max_range: int) -> int:
    """Increase of a counter that wraps to 0 after max_range (RAPL's energy_uj)."""
    return end - start if end >= start else end + max_range - start


class Meter:
    """start() just before the window opens, stop() as it closes."""

    name = "none"

    def idle(self) -> None:
        """Read idle power before the run, where the meter can."""

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> EnergyReading:
        return EnergyReading(False, None, time.perf_counter() - self._t0, "none", self.reason)

    reason = "not measured: no GPU energy counter or RAPL counters readable on this machine"


class RaplMeter(Meter):
    name = "rapl"

    def __init__(self, root: Path = POWERCAP):
        self.zones = rapl_packages(root)
        if not self.zones:
            raise RuntimeError(f"no readable RAPL package counters under {root}")

    def _read(self) -> list[int]:
        return [int((z / "energy_uj").read_text()) for z in self.zones]

    def start(self) -> None:
        self._start = self._read()
        self._t0 = time.perf_counter()

    def stop(self) -> EnergyReading:
        end = self._read()
        window = time.perf_counter() - self._t0
        total_uj = 0
        for z, a, b in zip(self.zones, self._start, end, strict=True):
            total_uj += counter_delta(a, b, int((z / "max_energy_range_uj").read_text()))
        names = ", ".join(z.name for z in self.zones)
        return EnergyReading(True, total_uj / 1e6, window, "package", f"RAPL powercap counters ({names})")


def rapl_packages(root: Path = POWERCAP) -> list[Path]:
    """Package-level RAPL zones (intel-rapl:N, not their sub-zones) whose counters can be read."""
    zones = []
    for z in sorted(root.glob("intel-rapl:*")):
        if z.name.count(":") != 1:
            continue
        try:
            int((z / "energy_uj").read_text())
            int((z / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            continue
        zones.append(z)
    return zones


class NvmlMeter(Meter):
    name = "nvml"

    def __init__(self, index: int = 0):
        import pynvml as nv  # nvidia-ml-py: loaded by GPU meters only

        nv.nvmlInit()
        self.nv = nv
        self.h = nv.nvmlDeviceGetHandleByIndex(index)
        try:
            nv.nvmlDeviceGetTotalEnergyConsumption(self.h)
            self.has_counter = True
        except Exception:
            self.has_counter = False
        self.idle_w: float | None = None
        self.sampler = PowerSampler(self._watts, extra=self._clocks)

    def _watts(self) -> float:
        return self.nv.nvmlDeviceGetPowerUsage(self.h) / 1000.0

    def _clocks(self) -> dict:
        nv = self.nv
        try:
            reasons = nv.nvmlDeviceGetCurrentClocksEventReasons(self.h)
        except Exception:
            reasons = None
        return {"sm_mhz": nv.nvmlDeviceGetClockInfo(self.h, nv.NVML_CLOCK_SM), "reasons": reasons}

    def idle(self, seconds: float = 0.5) -> None:
        s = PowerSampler(self._watts)
        s.start()
        time.sleep(seconds)
        joules, covered, _ = s.stop()
        self.idle_w = joules / covered if covered > 0 else None

    def start(self) -> None:
        self._e0 = self.nv.nvmlDeviceGetTotalEnergyConsumption(self.h) if self.has_counter else None
        self.sampler.start()
        self._t0 = time.perf_counter()

    def stop(self) -> EnergyReading:
        e1 = self.nv.nvmlDeviceGetTotalEnergyConsumption(self.h) if self.has_counter else None
        window = time.perf_counter() - self._t0
        sampled_j, _, n = self.sampler.stop()
        clocks = throttle_summary(self.sampler.extras)
        extra = {"idle_w": self.idle_w, "samples": n, "clocks": clocks}
        if e1 is not None and e1 > self._e0:
            return EnergyReading(True, (e1 - self._e0) / 1000.0, window, "device", "NVML total-energy counter", **extra)
        why = "no energy counter" if e1 is None else "energy counter did not move over the window"
        method = f"NVML power sampled at {SAMPLE_HZ:g} Hz ({why})"
        return EnergyReading(True, sampled_j, window, "device", method, **extra)


# NVML clock-event reasons that mean the clocks were held down (not idle / app-clock settings)
THROTTLE_BITS = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
}


def throttle_summary(extras: list[dict]) -> dict:
    """SM clock range over the window and every throttle reason seen in it."""
    clocks = [e["sm_mhz"] for e in extras if e.get("sm_mhz") is not None]
    seen = sorted(
        {name for e in extras if e.get("reasons") for bit, name in THROTTLE_BITS.items() if e["reasons"] & bit}
    )
    return {
        "sm_mhz_min": min(clocks) if clocks else None,
        "sm_mhz_max": max(clocks) if clocks else None,
        "throttle_reasons": seen,
        "throttled": bool(seen),
    }


class AssumedMeter(Meter):
    """--assume-watts: an estimate, never a measurement; says so in every output."""

    name = "assumed"

    def __init__(self, watts: float, scope: str):
        if not watts > 0:
            raise ValueError("--assume-watts must be > 0")
        self.watts, self.scope = watts, scope

    def stop(self) -> EnergyReading:
        window = time.perf_counter() - self._t0
        return EnergyReading(
            False,
            self.watts * window,
            window,
            self.scope,
            f"ESTIMATE: {self.watts:g} W assumed by the user (--assume-watts), not measured",
            estimate=True,
        )


METERS: dict[str, type[Meter]] = {
    "nvml": NvmlMeter,
    "rapl": RaplMeter,
    "assumed": AssumedMeter,
    "none": Meter,
}


def select_meter(
    device_type: str, gpu_index: int = 0, assume_watts: float | None = None, root: Path = POWERCAP
) -> Meter:
    """The meter for a run: an explicit estimate if asked, else NVML (GPU) or RAPL (CPU), else none."""
    if assume_watts is not None:
        return AssumedMeter(assume_watts, "device" if device_type == "cuda" else "package")
    try:
        return NvmlMeter(gpu_index) if device_type == "cuda" else RaplMeter(root)
    except Exception:
        return Meter()
