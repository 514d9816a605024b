"""Derived metrics of a run: MFU against the dense nameplate peak, P-equivalent, energy efficiency.

MFU = delivered FLOPS / dense nameplate peak at the precision of the math actually used; the
denominator and where it comes from are recorded beside the ratio. On CUDA, fp32 convolutions run
as TF32 when cuDNN allows it (torch's default), so their denominator is the TF32 peak. On a CPU the
peak is computed from cores x clock x FLOPs/cycle (harness/machine/devices.py) for fp32 and fp64; other
precisions have no CPU nameplate here, so MFU is "unknown" rather than a guess.
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


def nameplate_peak(device: torch.device, precision: str) -> tuple[float | None, str]:
    """(dense peak TFLOPS or None, a line saying where it comes from or why it is unknown)."""
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
    cpu = detect_cpu()
    peak = cpu.peak_tflops(key)
    if peak is None:
        return None, f"unknown: no nameplate {key} peak for this CPU"
    return peak, f"{cpu.model} {key} {peak:g} TFLOPS, {cpu.peak_lowp_method.get(key, cpu.peak_method)}"


def run_metrics(
    flops_per_sample: float, throughput_sps: float, peak_tflops: float | None, energy: EnergyReading
) -> dict:
    """Every derived figure of a measurement window; None where an input is not measured."""
    delivered = flops_per_sample * throughput_sps  # FLOPS
    j = energy.joules if energy.measured else None
    samples_per_s = throughput_sps
    per_sample = j / (samples_per_s * energy.window_s) if j is not None and samples_per_s > 0 else None
    pflop_done = delivered * energy.window_s / 1e15
    avg_kw = energy.avg_w / 1e3 if energy.avg_w else None
    return {
        "delivered_tflops": delivered / 1e12,
        "pflops_equivalent": delivered / 1e15,
        "mfu": delivered / 1e12 / peak_tflops if peak_tflops else None,
        "joules_per_sample": per_sample,
        "samples_per_joule": 1 / per_sample if per_sample else None,
        "joules_per_pflop": j / pflop_done if j is not None and pflop_done > 0 else None,
        "pflops_per_kw": delivered / 1e15 / avg_kw if avg_kw else None,
        "energy_is_estimate": energy.estimate,
    }
