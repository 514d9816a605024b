"""The server under test as this host sees it: the process listening on the URL's port, the GPUs it
computes on, and its share of the CPU; and what is known of its device and precision, each with its
origin ("measured: ...", "given: --flag" or "not known: ...").

Energy is charged to a served model only when its process is found here: NVML's board counters of
the GPUs that process uses, or (a CPU server) RAPL's package energy times the process's share of the
CPU time spent over the window. A server elsewhere, or a port no local process listens on, gives
"not measured". MFU needs the server's precision and device: given (`--server-precision`,
`--server-device`, `--server-devices`) or measured (its process found here); otherwise it is "not
computed", never taken from this client's defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch

from harness.machine.specs import match_spec
from harness.measure.energy import EnergyReading, Meter
from harness.measure.metrics import nameplate_peak

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "[::1]"}
PROC = Path("/proc")
LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def listening_pid(port: int, proc: Path = PROC) -> int | None:
    """The pid of the process with a TCP socket listening on `port` (IPv4 or IPv6), or None (no
    listener, or the socket belongs to a process this user cannot inspect)."""
    inodes = set()
    for table in ("net/tcp", "net/tcp6"):
        try:
            lines = (proc / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == LISTEN and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    return int(pid_dir.name)
        except OSError:  # a process that ended, or one we may not inspect
            continue
    return None


def process_cpu_seconds(pid: int, proc: Path = PROC) -> float:
    """CPU time (user + system) the process and its reaped children have used, in seconds."""
    stat = (proc / str(pid) / "stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 onwards
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def busy_cpu_seconds(proc: Path = PROC) -> float:
    """CPU time every process on this host has spent busy (all CPUs, idle and iowait excluded)."""
    cpu = (proc / "stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(v) for v in cpu[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def gpus_of(pid: int) -> list[int] | None:
    """NVML indices of the GPUs on which `pid` has a compute context; None when NVML is not there."""
    try:
        import pynvml as nv  # nvidia-ml-py: inside the try, a missing or broken NVML is "no GPU"

        nv.nvmlInit()
    except Exception:
        return None
    found = []
    for i in range(nv.nvmlDeviceGetCount()):
        handle = nv.nvmlDeviceGetHandleByIndex(i)
        if any(p.pid == pid for p in nv.nvmlDeviceGetComputeRunningProcesses(handle)):
            found.append(i)
    return found


class CpuShareMeter(Meter):
    """RAPL package energy over the window times the server process's share of the busy CPU time in
    it: the energy its computation is charged with on a host that also runs other work (this client
    included). The share is measured per window from /proc; idle power is shared out the same way."""

    name = "rapl x process CPU share"

    def __init__(self, package: Meter, pid: int, proc: Path = PROC):
        self.package, self.pid, self.proc = package, pid, proc
        self._start = (0.0, 0.0)

    def start(self) -> None:
        self._start = (process_cpu_seconds(self.pid, self.proc), busy_cpu_seconds(self.proc))
        self.package.start()

    def stop(self) -> EnergyReading:
        r = self.package.stop()
        server = process_cpu_seconds(self.pid, self.proc) - self._start[0]
        busy = busy_cpu_seconds(self.proc) - self._start[1]
        share = min(1.0, server / busy) if busy > 0 else 0.0
        joules = r.joules * share if r.measured and r.joules is not None else None
        method = f"{r.method} x the server process's share of busy CPU time ({100 * share:.0f}%, pid {self.pid})"
        return EnergyReading(joules is not None, joules, r.window_s, r.scope, method, samples=r.samples)


class SumMeter(Meter):
    """The sum of several meters over the same window (the GPUs one server process computes on)."""

    def __init__(self, meters: list[Meter]):
        self.meters = meters
        self.name = " + ".join(m.name for m in meters)

    def start(self) -> None:
        for m in self.meters:
            m.start()

    def stop(self) -> EnergyReading:
        readings = [m.stop() for m in self.meters]
        ok = all(r.measured and r.joules is not None for r in readings)
        joules = sum(r.joules for r in readings) if ok else None
        window = max(r.window_s for r in readings)
        methods = "; ".join(r.method for r in readings)
        return EnergyReading(ok, joules, window, readings[0].scope, f"sum of {len(readings)}: {methods}")


@dataclass
class ServerFacts:
    """The server under test: its process here (if found), its device and precision, and the origin
    of each ("measured: ...", "given: --flag", "not known: ...")."""

    pid: int | None = None
    device_type: str | None = None  # "cuda" or "cpu" where measured here
    gpus: list[int] = field(default_factory=list)
    device_name: str | None = None  # given (a spec table name) or measured
    devices: int | None = None
    precision: str | None = None
    origin: dict[str, str] = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return self.pid is not None

    def describe(self) -> str:
        """The server's device in a few words, with how it is known."""
        if self.device_name is not None:
            return f"{self.devices or '?'} x {self.device_name} (given)"
        if self.local:
            what = f"GPUs {self.gpus}" if self.gpus else "CPU"
            return f"{what} of pid {self.pid} on this host (measured)"
        return f"unknown ({self.origin.get('process', 'not looked for')})"

    def mfu_missing(self) -> str | None:
        """Why MFU cannot be computed ("not computed: ..."), or None when precision and device are known."""
        if self.precision is None:
            return "not computed: the server's precision is not known (give --server-precision)"
        if self.device_name is None and not self.local:
            return "not computed: the server's device is not known (give --server-device, or run it on this host)"
        if self.devices is None:
            return "not computed: the number of the server's devices is not known (give --server-devices)"
        return None


def find_server(url: str, choice: str, precision: str | None, device: str | None, devices: int | None) -> ServerFacts:
    """What is known of the server at `url`. `choice`: --device (auto: find its process if the URL is
    local; none: do not look); `precision`, `device`, `devices`: --server-precision, --server-device,
    --server-devices as given (None: not given)."""
    facts = ServerFacts(precision=precision)
    facts.origin["precision"] = "given: --server-precision" if precision else "not known: --server-precision not given"
    u = urlparse(url)
    host, port = u.hostname or "", u.port or (443 if u.scheme == "https" else 80)
    if choice == "none":
        where = "not looked for: --device none"
    elif host not in LOCAL_HOSTS:
        where = f"not on this host: {host}"
    else:
        facts.pid = listening_pid(port)
        where = (
            f"measured: pid {facts.pid} listens on port {port}"
            if facts.pid
            else f"no process on this host listens on port {port}"
        )
    facts.origin["process"] = where
    if facts.pid is not None:
        gpus = gpus_of(facts.pid) if choice != "cpu" else []
        facts.gpus = gpus or []
        facts.device_type = "cuda" if facts.gpus else "cpu"
        facts.devices = len(facts.gpus) or 1
        used = f"GPUs {facts.gpus}" if facts.gpus else "the CPU (no GPU compute context)"
        facts.origin["device"] = f"measured: pid {facts.pid} computes on {used}"
        facts.origin["devices"] = f"measured: {facts.devices}"
    if device is not None:
        facts.device_name = device
        facts.origin["device"] = "given: --server-device"
    if devices is not None:
        facts.devices = devices
        facts.origin["devices"] = "given: --server-devices"
    facts.origin.setdefault("device", "not known: --server-device not given and no server process here")
    facts.origin.setdefault("devices", "not known: --server-devices not given")
    return facts


def server_peak(facts: ServerFacts) -> tuple[float | None, str]:
    """(the server's dense peak TFLOPS, where it comes from), or (None, "not computed: ...") when its
    precision or device is not known: never this client's device or a default precision."""
    missing = facts.mfu_missing()
    if missing is not None:
        return None, missing
    precision, n = facts.precision, facts.devices
    if facts.device_name is not None:
        row = match_spec(facts.device_name)
        peak = row.peak_tflops(precision) if row is not None else None
        if peak is None:
            return None, f"not computed: the spec table has no {precision} figure for {facts.device_name}"
        return n * peak, f"{n} x {row.name} {precision} dense {peak:g} TFLOPS (given: --server-device): {row.source}"
    if facts.gpus:
        peak, src = nameplate_peak(torch.device(f"cuda:{facts.gpus[0]}"), precision)
    else:
        peak, src = nameplate_peak(torch.device("cpu"), precision, pid=facts.pid)
    if peak is None:
        return None, f"not computed: {src}"
    return n * peak, f"{n} x {src} (measured: the server process's device)"
