"""Will it fit? What a run is about to allocate, against the memory free on the host or device; and
how much the host process really held over a point's window (`RssPeak`).

A run that asks for more memory than the machine has must not end in the kernel's OOM killer
(the process dies, the result stays "running"). So before allocating, each benchmark estimates
its large buffers (frames, batch tensors, ONNX inputs, LoadGen's sample set and query schedule,
LLM weights and KV cache, the model's activations) and:
- refuses in one line when a fixed part of the request cannot fit (`check_fits`);
- records a point as skipped ("would not fit (estimated: ...)"), not run, and goes on, when one
  point of a sweep cannot (`fits`).
An allocation that fails anyway (`is_oom`) is recorded as out of memory ("oom"). Estimates count
the large buffers only: a point that passes may still fail, and is then caught as a real OOM.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import torch

from harness.errors import UserError

HEADROOM = 0.9  # leave a tenth of what is free to everything else (the OS, allocator slack)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _address_space_left() -> int | None:
    """What the process's RLIMIT_AS (`ulimit -v`) leaves above its current virtual size, or None."""
    try:
        import resource  # POSIX only, inside the try

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * resource.getpagesize()
        return max(soft - size, 0)
    except (OSError, ValueError, ImportError):
        return None


def _cgroup_left() -> int | None:
    """What the cgroup v2 memory limit (a container's: memory.max, or memory.high if lower) leaves
    above its working set (memory.current less the inactive page cache the kernel reclaims, as
    `docker stats` counts it), or None."""
    try:
        limits = []
        for name in ("memory.max", "memory.high"):
            with open(f"/sys/fs/cgroup/{name}") as f:
                value = f.read().strip()
            if value != "max":
                limits.append(int(value))
        if not limits:
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        with open("/sys/fs/cgroup/memory.stat") as f:
            stat = dict(line.split() for line in f if line.count(" ") == 1)
        used -= int(stat.get("inactive_file", 0))
        return max(min(limits) - max(used, 0), 0)
    except (OSError, ValueError):
        return None


def host_limit() -> tuple[int, str] | None:
    """What this process can still allocate on the host, and whose limit that is: the least of
    MemAvailable (/proc/meminfo, without swapping: "free"), its address-space limit ("left under
    ulimit -v") and its cgroup's memory limit ("left under the cgroup limit"); None if none is known."""
    limits = (
        (_meminfo_available(), "is free"),
        (_address_space_left(), "is left under ulimit -v"),
        (_cgroup_left(), "is left under the cgroup's memory limit"),
    )
    known = [(v, why) for v, why in limits if v is not None]
    return min(known) if known else None


def device_free_bytes(device: torch.device) -> int | None:
    """Free memory on a CUDA device (driver's view), or None for the CPU."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    # torch's cached but unused blocks are free to torch; what live tensors hold is not
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def fits(host_bytes: float, device_bytes: float, device: torch.device) -> str | None:
    """None if both fit in what is free; else a line saying what does not."""
    on_device = device.type == "cuda"
    host = host_limit() or (None, "is free")
    checks = [("host", host_bytes + (0 if on_device else device_bytes), *host)]
    if on_device:
        checks.append((f"{device} ", device_bytes, device_free_bytes(device), "is free"))
    for where, need, free, whose in checks:
        if free is not None and need > HEADROOM * free:
            return f"needs about {gib(need)} of {where.strip()} memory, {gib(free)} {whose}"
    return None


def check_fits(what: str, host_bytes: float, device_bytes: float, device: torch.device) -> None:
    """A UserError naming `what` if it cannot fit."""
    why = fits(host_bytes, device_bytes, device)
    if why:
        raise UserError(f"{what} {why}")


def is_oom(e: BaseException) -> bool:
    """An allocation failure: Python's MemoryError (numpy's too), torch's OutOfMemoryError, or a
    RuntimeError from an allocator (torch CPU: "can't allocate memory"; ONNX Runtime: "Failed to
    allocate memory")."""
    if isinstance(e, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and any(
        s in text for s in ("out of memory", "can't allocate memory", "failed to allocate memory", "bad_alloc")
    )


def activation_bytes_per_sample(builder, num_classes: int, input_hw: tuple[int, int]) -> int:
    """The largest single activation of one sample's forward pass, in fp32 bytes, traced on the
    meta device (no memory, no compute). At peak an op's input and output are both alive, and
    skip connections keep more: callers count a few of these."""
    from torch.utils._python_dispatch import TorchDispatchMode  # a private torch module: only this estimate uses it

    class Largest(TorchDispatchMode):
        biggest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, tuple | list) else (out,):
                if isinstance(t, torch.Tensor):
                    Largest.biggest = max(Largest.biggest, t.numel() * 4)
            return out

    with torch.device("meta"):
        model = builder(num_classes).eval()
    with Largest(), torch.inference_mode():
        model(torch.empty(1, 3, *input_hw, device="meta"))
    return Largest.biggest


RSS_PERIOD_S = 0.02  # the RSS sampler's period: reading /proc/self/statm costs microseconds


def process_rss_bytes() -> int | None:
    """This process's resident set size now (/proc/self/statm: resident pages x the page size), or
    None where it cannot be read (no /proc)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class RssPeak:
    """The peak of this process's RSS over one window: read at start(), every `period` seconds on a
    thread, and at stop(). Each start() begins afresh, so each point of a sweep gets its own figure
    (the process's lifetime peak, ru_maxrss, only grows). A rise and fall shorter than the period can
    fall between two reads: the figure is a sampled peak, and `scope` says so."""

    def __init__(self, period: float = RSS_PERIOD_S, read: Callable[[], int | None] = process_rss_bytes):
        self.period, self.read = period, read
        self.peak: int | None = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def scope(self) -> str:
        return f"host: process RSS sampled every {self.period * 1e3:g} ms over the point's timed window"

    def _sample(self) -> None:
        rss = self.read()
        if rss is not None:
            self.peak = rss if self.peak is None else max(self.peak, rss)
            self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def start(self) -> None:
        self.stop()  # a window that ended in an error left its thread
        self.peak, self.samples = None, 0
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="rss-peak", daemon=True)
        self._thread.start()

    def stop(self) -> int | None:
        """The peak in bytes over the window (None: RSS not readable here)."""
        if self._thread is None:
            return self.peak
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._sample()
        return self.peak

    def __enter__(self) -> RssPeak:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
