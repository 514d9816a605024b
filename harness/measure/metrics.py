"""Derived metrics of a run: MFU against the dense nameplate peak, P-equivalent, energy efficiency.

MFU = delivered FLOPS / dense nameplate peak at the precision of the math actually used; the
denominator and where it comes from are recorded beside the ratio. On CUDA, fp32 convolutions run
as TF32 when cuDNN allows it (torch's default), so their denominator is the TF32 peak. On a CPU the
peak is computed from cores x clock x FLOPs/cycle (harness/machine/devices.py) for fp32 and fp64, and
for bf16/int8 where the ISA has units for them (AMX, AVX-512); other precisions have no CPU
nameplate here, so MFU is "unknown" rather than a guess.
"""

from __future__ import annotations

import torch

from harness.machine.devices import detect_cpu, device_name
from harness.machine.specs import match_spec
from harness.measure.energy import EnergyReading


def peak_precision(device: torch.device, precision: str) -> str:
    """The spec-table precision whose peak bounds this run's math."""
    if device.type == "cuda" and precision == "fp32" and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return precision


def nameplate_peak(device: torch.device, precision: str, pid: int = 0) -> tuple[float | None, str]:
    """(dense peak TFLOPS or None, a line saying where it comes from or why it is unknown). On the CPU,
    the peak of the cores process `pid` may run on (0: this process)."""
    key = peak_precision(device, precision)
    if device.type == "cuda":
        name = device_name(device)
        row = match_spec(name)
        if row is None:
            return None, f"unknown: {name} has no row in the spec table (add one with --spec)"
        peak = row.peak_tflops(key)
        if peak is None:
            return None, f"unknown: the spec table has no {key} figure for {row.name}"
        mark = " (unconfirmed)" if key in row.unconfirmed else ""
        return peak, f"{row.name} {key} dense {peak:g} TFLOPS{mark}: {row.source}"
    cpu = detect_cpu(pid)
    peak = cpu.peak_tflops(key)
    if peak is None:
        return None, f"unknown: no nameplate {key} peak for this CPU"
    return peak, f"{cpu.model} {key} {peak:g} TFLOPS, {cpu.peak_lowp_method.get(key, cpu.peak_method)}"


def energy_per_work(joules: float | None, samples: float, flops: float) -> dict:
    """Energy per unit of useful work, the one copy of these formulas: joules per sample, samples
    per joule and joules per PFLOP (energy / (FLOPs / 1e15)); None where energy was not measured."""
    if joules is None:
        return {"joules_per_sample": None, "samples_per_joule": None, "joules_per_pflop": None}
    return {
        "joules_per_sample": joules / samples if samples > 0 else None,
        "samples_per_joule": samples / joules if joules else None,
        "joules_per_pflop": joules / (flops / 1e15) if flops > 0 else None,
    }


def energy_per_token(joules: float | None, tokens: float, flops: float) -> dict:
    """An LLM point's energy figures through `energy_per_work`, a token being its unit of work: joules
    per output token and joules per PFLOP; None where energy was not measured (or nothing was done)."""
    work = energy_per_work(joules, tokens, flops)
    return {"joules_per_token": work["joules_per_sample"], "joules_per_pflop": work["joules_per_pflop"]}


def pflops_per_kw(delivered_tflops: float, avg_w: float | None) -> float | None:
    """Delivered PFLOPS per kW of average power over the same window; None where power is unknown."""
    return delivered_tflops / 1e3 / (avg_w / 1e3) if avg_w else None


def run_metrics(
    flops_per_sample: float, throughput_sps: float, peak_tflops: float | None, energy: EnergyReading
) -> dict:
    """Every derived figure of a measurement window; None where an input is not measured."""
    delivered = flops_per_sample * throughput_sps / 1e12  # TFLOPS
    samples = throughput_sps * energy.window_s
    return {
        "delivered_tflops": delivered,
        "pflops_equivalent": delivered / 1e3,
        "mfu": delivered / peak_tflops if peak_tflops else None,
        **energy_per_work(energy.joules, samples, flops_per_sample * samples),  # None: neither measured nor estimated
        "pflops_per_kw": pflops_per_kw(delivered, energy.avg_w),
    }


def point_metrics(
    device: torch.device, precision: str, flops_per_sample: float, throughput_sps: float, energy: EnergyReading
) -> dict:
    """A vision Point's metric fields, filled the same way by every measurement: delivered FLOPS,
    P-equivalent, MFU with its denominator and where it comes from, energy and energy per work."""
    peak, source = nameplate_peak(device, precision)
    return {
        **run_metrics(flops_per_sample, throughput_sps, peak, energy),
        "mfu_peak_tflops": peak,
        "mfu_peak_source": source,
        "mfu_precision": peak_precision(device, precision),
        "energy": energy.to_dict(),
    }
