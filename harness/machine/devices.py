"""What hardware this machine has: CPU (model, cores, ISA, memory) and GPUs (NVML, torch fallback).

Also resolves the user's `--device` choice to a torch device, with one clear error when it cannot.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from harness.errors import UserError
from harness.machine.specs import match_spec

ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_fp16",
    "avx512_vnni",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
    "sve",
    "asimd",
)


@dataclass
class CpuInfo:
    model: str
    vendor: str
    family: int | None
    logical_cores: int
    physical_cores: int
    sockets: int
    isa: list[str]
    memory_gib: float
    max_clock_mhz: float | None
    peak_fp64_tflops: float | None
    peak_fp32_tflops: float | None
    peak_method: str
    peak_lowp: dict = field(default_factory=dict)  # "bf16"/"int8" -> TFLOPS (TOPS), from AMX or AVX-512 units
    peak_lowp_method: dict = field(default_factory=dict)  # precision -> how it was computed

    def peak_tflops(self, precision: str) -> float | None:
        """The computed nameplate at a precision (fp64, fp32, and bf16/int8 where the ISA has units for them)."""
        return {"fp64": self.peak_fp64_tflops, "fp32": self.peak_fp32_tflops, **self.peak_lowp}.get(precision)


@dataclass
class GpuInfo:
    index: int
    name: str
    memory_gib: float
    driver: str | None
    cuda_version: str | None
    power_limit_w: float | None
    sm_clock_mhz: float | None
    max_sm_clock_mhz: float | None
    mem_clock_mhz: float | None
    uuid: str | None
    source: str  # "nvml" or "torch"
    spec_row: str | None = None
    spec_source: str | None = None


@dataclass
class MachineInfo:
    hostname: str
    os: str
    cpu: CpuInfo
    gpus: list[GpuInfo] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _cpuinfo_fields() -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per logical processor (empty on non-Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    procs = []
    for block in text.strip().split("\n\n"):
        d = {}
        for line in block.splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                d[k.strip()] = v.strip()
        procs.append(d)
    return procs


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)


def _max_clock_mhz(procs: list[dict[str, str]]) -> tuple[float | None, str]:
    """(clock MHz, where it was read): cpufreq's maximum if exposed, else /proc/cpuinfo's current clock."""
    f = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return int(f.read_text()) / 1000.0, "cpufreq maximum"
    except (OSError, ValueError):
        pass
    mhz = [float(p["cpu MHz"]) for p in procs if "cpu MHz" in p]
    if not mhz:
        return None, "no clock found"
    return max(mhz), "/proc/cpuinfo current clock, not the boost clock: a lower bound, so MFU may read high"


def fp64_flops_per_cycle(vendor: str, family: int | None, isa: list[str]) -> tuple[int, str]:
    """FP64 FLOPs per cycle per core from the ISA, and the assumption behind it.

    One FMA = 2 FLOPs. Two FMA pipes is the common server core; AMD Zen 4 (family 25 with AVX-512)
    runs 512-bit ops on 256-bit pipes, so it gets the AVX2 rate.
    """
    if "avx512f" in isa:
        if vendor == "AuthenticAMD" and family is not None and family < 26:
            return 16, "AVX-512 on 256-bit pipes (AMD Zen 4): 2 FMA x 4 FP64 x 2"
        return 32, "AVX-512, assumes 2 x 512-bit FMA units: 2 FMA x 8 FP64 x 2"
    if "avx2" in isa and "fma" in isa:
        return 16, "AVX2+FMA, 2 FMA units: 2 FMA x 4 FP64 x 2"
    if "avx" in isa:
        return 8, "AVX without FMA: 1 add + 1 mul x 4 FP64"
    if "asimd" in isa:
        return 8, "NEON, assumes 2 x 128-bit FMA units: 2 FMA x 2 FP64 x 2"
    return 4, "SSE2: 1 add + 1 mul x 2 FP64"


def lowp_ops_per_cycle(vendor: str, family: int | None, isa: list[str]) -> dict[str, tuple[int, str]]:
    """BF16 FLOPs and INT8 ops per cycle per core from the matrix or dot-product units the ISA has.

    AMX (Intel Sapphire Rapids and later): 1,024 BF16 FLOPs and 2,048 INT8 ops per cycle per core
    (Intel's AMX figures). AVX-512 dot products on two 512-bit FMA ports: VDPBF16PS = 16 lanes x 2
    BF16 products x 2 FLOPs = 64 per instruction, 128 per cycle; VPDPBUSD = 64 INT8 products x 2 =
    128 ops per instruction, 256 per cycle; AMD Zen 4 runs them on 256-bit pipes (half); AVX-VNNI
    (256-bit) gives 128 INT8 ops per cycle."""
    half = vendor == "AuthenticAMD" and family is not None and family < 26
    out: dict[str, tuple[int, str]] = {}
    if "amx_bf16" in isa:
        out["bf16"] = (1024, "AMX-BF16: 1,024 BF16 FLOPs/cycle/core")
    elif "avx512_bf16" in isa:
        out["bf16"] = (
            (64, "AVX512_BF16 on 256-bit pipes (AMD Zen 4): 64 FLOPs/cycle")
            if half
            else (128, "AVX512_BF16, 2 x 512-bit ports: 2 x 16 lanes x 2 products x 2 = 128 FLOPs/cycle")
        )
    if "amx_int8" in isa:
        out["int8"] = (2048, "AMX-INT8: 2,048 INT8 ops/cycle/core")
    elif "avx512_vnni" in isa:
        out["int8"] = (
            (128, "AVX512_VNNI on 256-bit pipes (AMD Zen 4): 128 ops/cycle")
            if half
            else (256, "AVX512_VNNI, 2 x 512-bit ports: 2 x 64 products x 2 = 256 ops/cycle")
        )
    elif "avx_vnni" in isa:
        out["int8"] = (128, "AVX-VNNI, 2 x 256-bit ports: 2 x 32 products x 2 = 128 ops/cycle")
    return out


def detect_cpu(pid: int = 0) -> CpuInfo:
    """This host's CPU with the cores process `pid` may run on (0: this process) and its computed peaks."""
    procs = _cpuinfo_fields()
    first = procs[0] if procs else {}
    model = first.get("model name") or platform.processor() or platform.machine()
    vendor = first.get("vendor_id", "")
    family = int(first["cpu family"]) if first.get("cpu family", "").isdigit() else None
    flags = set((first.get("flags") or first.get("Features") or "").split())
    isa = [f for f in ISA_FLAGS if f in flags]
    logical = len(os.sched_getaffinity(pid)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = {(p.get("physical id", "0"), p.get("core id", str(i))) for i, p in enumerate(procs)}
    sockets = len({p.get("physical id", "0") for p in procs}) or 1
    physical = min(len(cores), logical) if cores else logical
    clock, clock_src = _max_clock_mhz(procs)
    per_cycle, why = fp64_flops_per_cycle(vendor, family, isa)
    lowp = lowp_ops_per_cycle(vendor, family, isa) if clock else {}
    lowp_peaks = {k: round(physical * clock * 1e6 * n / 1e12, 4) for k, (n, _) in lowp.items()}
    lowp_methods = {
        k: f"computed: {physical} cores x {clock:.0f} MHz ({clock_src}) x {n} ({why})" for k, (n, why) in lowp.items()
    }
    fp64 = physical * clock * 1e6 * per_cycle / 1e12 if clock else None
    method = (
        f"computed: {physical} cores x {clock:.0f} MHz ({clock_src}) x {per_cycle} FP64 FLOPs/cycle ({why}); "
        "FP32 = 2x FP64"
        if clock
        else "unknown: no clock frequency found"
    )
    return CpuInfo(
        model=model,
        vendor=vendor,
        family=family,
        logical_cores=logical or 1,
        physical_cores=physical or 1,
        sockets=sockets,
        isa=isa,
        memory_gib=_memory_gib(),
        max_clock_mhz=clock,
        peak_fp64_tflops=round(fp64, 4) if fp64 else None,
        peak_fp32_tflops=2 * round(fp64, 4) if fp64 else None,  # exactly twice fp64, as rounded
        peak_method=method,
        peak_lowp=lowp_peaks,
        peak_lowp_method=lowp_methods,
    )


def _nvml_gpus() -> list[GpuInfo] | None:
    """GPUs as NVML sees them; None when NVML is not there (no driver, no library)."""
    try:
        import pynvml as nv  # inside the try: a missing or broken NVML is 'no GPU', not a crash

        nv.nvmlInit()
    except Exception:
        return None
    try:
        driver = nv.nvmlSystemGetDriverVersion()
        try:
            v = nv.nvmlSystemGetCudaDriverVersion_v2()
            cuda = f"{v // 1000}.{(v % 1000) // 10}"
        except Exception:
            cuda = None
        gpus = []
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)

            def read(fn, *args, scale=1.0, h=h):
                try:
                    return fn(h, *args) * scale
                except Exception:
                    return None

            gpus.append(
                GpuInfo(
                    index=i,
                    name=nv.nvmlDeviceGetName(h),
                    memory_gib=round(nv.nvmlDeviceGetMemoryInfo(h).total / 2**30, 1),
                    driver=driver,
                    cuda_version=cuda,
                    power_limit_w=read(nv.nvmlDeviceGetEnforcedPowerLimit, scale=1e-3),
                    sm_clock_mhz=read(nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_SM),
                    max_sm_clock_mhz=read(nv.nvmlDeviceGetMaxClockInfo, nv.NVML_CLOCK_SM),
                    mem_clock_mhz=read(nv.nvmlDeviceGetMaxClockInfo, nv.NVML_CLOCK_MEM),
                    uuid=nv.nvmlDeviceGetUUID(h),
                    source="nvml",
                )
            )
        return gpus
    finally:
        nv.nvmlShutdown()


def _torch_gpus() -> list[GpuInfo]:
    if not torch.cuda.is_available():
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append(
            GpuInfo(
                index=i,
                name=p.name,
                memory_gib=round(p.total_memory / 2**30, 1),
                driver=None,
                cuda_version=torch.version.cuda,
                power_limit_w=None,
                sm_clock_mhz=None,
                max_sm_clock_mhz=None,
                mem_clock_mhz=None,
                uuid=str(getattr(p, "uuid", "")) or None,
                source="torch",
            )
        )
    return gpus


def detect_gpus() -> list[GpuInfo]:
    """Every GPU: NVML first (power limits, clocks), torch as fallback; matched to the spec table."""
    gpus = _nvml_gpus()
    if not gpus:
        gpus = _torch_gpus()
    for g in gpus:
        row = match_spec(g.name)
        if row is not None:
            g.spec_row, g.spec_source = row.name, row.source
    return gpus


def detect_machine() -> MachineInfo:
    return MachineInfo(
        hostname=platform.node(),
        os=f"{platform.system()} {platform.release()} ({platform.machine()})",
        cpu=detect_cpu(),
        gpus=detect_gpus(),
    )


# The torch dtype of each floating precision a run may ask for (int8 runs are backend-specific).
TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def device_name(device: torch.device) -> str:
    """The device's marketing name: the GPU's from the driver, the CPU's model string."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return detect_cpu().model


def check_precision(device: torch.device, precision: str, alternatives: str) -> None:
    """One clear line if the device cannot compute at `precision` (fp16 on a CPU, bf16 on an old GPU);
    `alternatives` says what to use instead."""
    if device.type == "cpu" and precision == "fp16":
        raise UserError(f"fp16 on the CPU is not supported; use {alternatives}")
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise UserError(f"{torch.cuda.get_device_name(device)} does not run bf16; use fp16 or fp32")


def use_cuda_device(dev: torch.device) -> None:
    """Make `dev` the current CUDA device of this thread for torch and for Numba's kernels alike
    (each keeps its own per-thread current device; both default to device 0)."""
    from numba import cuda as numba_cuda  # numba.cuda's import takes seconds: GPU runs only

    torch.cuda.set_device(dev)
    numba_cuda.select_device(dev.index or 0)


def resolve_device(choice: str) -> tuple[torch.device, str]:
    """Turn `--device auto|cpu|cuda[:N]` into a torch device and a line saying why it was picked."""
    choice = choice.strip().lower()
    if choice == "auto":
        if torch.cuda.is_available():
            use_cuda_device(torch.device("cuda:0"))
            return torch.device("cuda:0"), f"auto picked cuda:0 ({torch.cuda.get_device_name(0)})"
        return torch.device("cpu"), "auto picked cpu (no CUDA GPU visible)"
    if choice == "cpu":
        return torch.device("cpu"), "cpu (as asked)"
    m = re.fullmatch(r"cuda(?::(\d+))?", choice)
    if not m:
        raise UserError(f"unknown device {choice!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UserError(f"--device {choice} asked for, but no CUDA GPU is visible on this machine")
    index = int(m.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise UserError(f"--device {choice}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    use_cuda_device(torch.device("cuda", index))
    return torch.device("cuda", index), f"cuda:{index} ({torch.cuda.get_device_name(index)})"
