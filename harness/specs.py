"""The nameplate spec table (`data/accelerators.toml`) and matching a device name to its row."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

SPEC_FILE = Path(__file__).parent / "data" / "accelerators.toml"
PRECISIONS = ("fp64", "fp64_tensor", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")


@dataclass(frozen=True)
class SpecRow:
    """One accelerator's dense nameplate peaks (TFLOPS, TOPS for int8) and where they come from."""

    name: str
    match: tuple[str, ...]
    peaks: dict[str, float]
    source: str
    sparse_factor: float | None = None
    memory_gb: float | None = None
    memory_type: str | None = None
    bandwidth_gbs: float | None = None
    power_w: float | None = None
    unconfirmed: tuple[str, ...] = field(default_factory=tuple)
    note: str | None = None

    def matches(self, device_name: str) -> bool:
        return any(re.search(p, device_name, re.IGNORECASE) for p in self.match)

    def peak_tflops(self, precision: str) -> float | None:
        """Dense nameplate peak at `precision`, or None where the table does not know it."""
        return self.peaks.get(precision)


@cache
def spec_table() -> tuple[SpecRow, ...]:
    """All rows of the spec table, in file order."""
    with SPEC_FILE.open("rb") as f:
        raw = tomllib.load(f)
    rows = []
    for d in raw["device"]:
        unknown = set(d["peaks"]) - set(PRECISIONS)
        if unknown:
            raise ValueError(f"{SPEC_FILE}: row {d['name']!r} has unknown precisions {unknown}")
        rows.append(
            SpecRow(
                name=d["name"],
                match=tuple(d["match"]),
                peaks={k: float(v) for k, v in d["peaks"].items()},
                source=d["source"],
                sparse_factor=d.get("sparse_factor"),
                memory_gb=d.get("memory_gb"),
                memory_type=d.get("memory_type"),
                bandwidth_gbs=d.get("bandwidth_gbs"),
                power_w=d.get("power_w"),
                unconfirmed=tuple(d.get("unconfirmed", ())),
                note=d.get("note"),
            )
        )
    return tuple(rows)


def match_spec(device_name: str) -> SpecRow | None:
    """The spec row for a device name as NVML or torch reports it; None if no row matches."""
    for row in spec_table():
        if row.matches(device_name):
            return row
    return None
