"""Measured peaks of the device itself: dense GEMM per precision and memory copy bandwidth.

GEMM: square matmuls of a few sizes (the best one is kept), timed after a warm-up with the device
synchronized; FLOPs = 2 n^3. Copy: one large tensor copied on the device, read + write counted, as
docs/measurement.md's anchors count it ("Peaks"). Printed beside the dense nameplate figures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from harness.errors import first_line
from harness.machine.devices import TORCH_DTYPES, detect_cpu, device_name
from harness.machine.specs import match_spec
from harness.measure.timing import device_sync, repeat_timed

CPU_SIZES = (512, 1024, 2048)
GPU_SIZES = (4096, 8192, 16384)


@dataclass
class PeakRow:
    precision: str
    best_n: int | None
    measured_tflops: float | None  # TOPS for int8
    nameplate_tflops: float | None
    ratio: float | None
    note: str = ""


def time_best(fn, device: torch.device, min_time: float = 0.3, min_iters: int = 3) -> float:
    """Shortest wall time of fn (s) over at least min_iters calls and min_time seconds."""
    fn()
    device_sync(device)
    return min(repeat_timed(fn, min_time, min_iters, device))


def _operands(precision: str, n: int, device: torch.device):
    """(matmul callable) for a precision, or raise RuntimeError if the device cannot run it."""
    if precision == "int8":
        a = torch.randint(-128, 127, (n, n), dtype=torch.int8, device=device)
        b = torch.randint(-128, 127, (n, n), dtype=torch.int8, device=device).t().contiguous().t()
        return lambda: torch._int_mm(a, b)
    if precision == "fp8":
        if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
            raise RuntimeError("fp8 matmul needs a CUDA device of compute capability 8.9 or newer")
        a = torch.randn(n, n, device=device).to(torch.float8_e4m3fn)
        b = torch.randn(n, n, device=device).to(torch.float8_e4m3fn).t().contiguous().t()
        one = torch.ones((), device=device)
        return lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    dtype = {**TORCH_DTYPES, "fp64": torch.float64, "tf32": torch.float32}[precision]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return lambda: torch.matmul(a, b)


def gemm_peak(precision: str, device: torch.device, sizes: tuple[int, ...]) -> tuple[float, int]:
    """Best (TFLOPS, n) over the sizes; TF32 is allowed only for the tf32 row."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        best = (0.0, 0)
        for n in sizes:
            t = time_best(_operands(precision, n, device), device)
            best = max(best, (2 * n**3 / t / 1e12, n))
        return best
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def copy_bandwidth(device: torch.device, nbytes: int) -> float:
    """Device memory bandwidth of a large copy, GB/s, read + write counted."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    return 2 * nbytes / time_best(lambda: dst.copy_(src), device) / 1e9


def precisions_for(device: torch.device) -> tuple[str, ...]:
    if device.type == "cuda":
        return ("fp64", "fp32", "tf32", "bf16", "fp16", "int8", "fp8")
    cpu = detect_cpu()
    bf16 = ("bf16",) if {"avx512_bf16", "amx_bf16"} & set(cpu.isa) else ()
    return ("fp64", "fp32", *bf16, "int8")


def gemm_nameplate(row, precision: str) -> float | None:
    """The nameplate a GEMM at `precision` is held to: a float64 GEMM runs on the FP64 tensor cores
    where the chip has them (A100, H100: cuBLAS DGEMM uses DMMA), so its ceiling is fp64_tensor."""
    if precision == "fp64" and row.peak_tflops("fp64_tensor"):
        return row.peak_tflops("fp64_tensor")
    return row.peak_tflops(precision)


def measure_peaks(device: torch.device, progress=None) -> dict:
    """GEMM peak per precision and copy bandwidth, each beside its nameplate figure."""
    if device.type == "cuda":
        name = device_name(device)
        row = match_spec(name)
        plate = (lambda k: gemm_nameplate(row, k)) if row else (lambda k: None)
        plate_bw = row.bandwidth_gbs if row else None
        source = f"{row.name}: {row.source}" if row else f"no spec row for {name}: nameplate unknown"
        sizes, copy_bytes = GPU_SIZES, 1 << 30
    else:
        cpu = detect_cpu()
        name = cpu.model
        plate = cpu.peak_tflops
        plate_bw, source = None, cpu.peak_method
        sizes, copy_bytes = CPU_SIZES, 256 << 20
    rows = []
    for prec in precisions_for(device):
        if progress:
            progress(prec)
        try:
            tflops, n = gemm_peak(prec, device, sizes)
        except (RuntimeError, TypeError) as e:
            rows.append(PeakRow(prec, None, None, plate(prec), None, f"not run: {first_line(e, 100)}"))
            continue
        nameplate = plate(prec)
        ratio = tflops / nameplate if nameplate else None
        note = ""
        if ratio and ratio > 1.0:
            note = "above nameplate: the clock behind the nameplate is below the clock this device ran at"
        elif nameplate is None:
            note = "no nameplate figure for this precision"
        rows.append(PeakRow(prec, n, tflops, nameplate, ratio, note))
    if progress:
        progress("copy")
    bw = copy_bandwidth(device, copy_bytes)
    return {
        "device": str(device),
        "device_name": name,
        "nameplate_source": source,
        "gemm": [asdict(r) for r in rows],
        "copy_gbs": bw,
        "copy_nameplate_gbs": plate_bw,
        "copy_ratio": bw / plate_bw if plate_bw else None,
    }
