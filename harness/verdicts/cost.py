"""What measured work costs, from prices the user gives (`--electricity-price`, `--device-hour-price`).

Per point: cost per million items (samples, or output tokens for LLM points) and per PFLOP-hour of
delivered compute (3,600 PFLOP), as an energy part (measured joules x price per kWh; not measured ->
no figure) and a device-time part (device-hours x price per device-hour; a sum over devices counts
every device). LLM points have no PFLOP-hour figure: their delivered FLOPS (prefill) is not what
their output tokens cost. Every figure is labelled with the prices it used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.errors import UserError

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Prices:
    per_kwh: float | None = None  # electricity, per kWh
    per_device_hour: float | None = None  # renting or owning one device for an hour

    def __post_init__(self) -> None:
        for name, v in (("--electricity-price", self.per_kwh), ("--device-hour-price", self.per_device_hour)):
            if v is not None and not (math.isfinite(v) and 0 <= v <= 1e6):
                raise UserError(f"{name} must be a finite price in 0..1,000,000, got {v!r}")

    def given(self) -> bool:
        return self.per_kwh is not None or self.per_device_hour is not None

    def label(self) -> str:
        parts = []
        if self.per_kwh is not None:
            parts.append(f"electricity {self.per_kwh:g} per kWh")
        if self.per_device_hour is not None:
            parts.append(f"{self.per_device_hour:g} per device-hour")
        return ", ".join(parts) or "no prices given"


def row_costs(row: dict, prices: Prices, devices: int = 1) -> dict:
    """A report row's costs: {per_million_energy, per_million_device, per_million, per_pflop_hour_energy,
    per_pflop_hour_device, per_pflop_hour}; None where an input is missing (energy not measured,
    no price given, an LLM point's PFLOP-hour)."""
    c = dict.fromkeys(
        (
            "per_million_energy",
            "per_million_device",
            "per_million",
            "per_pflop_hour_energy",
            "per_pflop_hour_device",
            "per_pflop_hour",
        )
    )
    rate, j_item, tflops, j_pflop = (
        row.get(k) for k in ("throughput", "joules_per_item", "delivered_tflops", "joules_per_pflop")
    )
    if prices.per_kwh is not None and j_item is not None:
        c["per_million_energy"] = j_item * 1e6 / J_PER_KWH * prices.per_kwh
    if prices.per_device_hour is not None and rate:
        c["per_million_device"] = 1e6 / rate / 3600 * devices * prices.per_device_hour
    if row.get("kind") != "llm":
        if prices.per_kwh is not None and j_pflop is not None:
            c["per_pflop_hour_energy"] = j_pflop * 3600 / J_PER_KWH * prices.per_kwh
        if prices.per_device_hour is not None and tflops:
            c["per_pflop_hour_device"] = 3600 / (tflops / 1e3) / 3600 * devices * prices.per_device_hour
    for total, parts in (
        ("per_million", ("per_million_energy", "per_million_device")),
        ("per_pflop_hour", ("per_pflop_hour_energy", "per_pflop_hour_device")),
    ):
        wanted = [
            p for p, price in zip(parts, (prices.per_kwh, prices.per_device_hour), strict=True) if price is not None
        ]
        if wanted and all(c[p] is not None for p in wanted):
            c[total] = sum(c[p] for p in wanted)
    return c
