"""The nameplate spec table (`data/accelerators.toml`) and matching a device name to its row."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from harness import DATA_DIR
from harness.errors import UserError
from harness.inputs import read_toml

SPEC_FILE = DATA_DIR / "accelerators.toml"
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


REQUIRED = ("name", "match", "peaks", "source")
OPTIONAL = ("sparse_factor", "memory_gb", "memory_type", "bandwidth_gbs", "power_w", "unconfirmed", "note")
_user_rows: list[SpecRow] = []


def load_spec_file(path: Path) -> list[SpecRow]:
    """Rows of a spec TOML file ([[device]] tables as in data/accelerators.toml), validated.

    Raises ValueError naming the file, the row and the problem.
    """
    try:
        raw = read_toml(path, "spec file")
    except UserError as e:
        raise ValueError(str(e)) from None
    devices = raw.get("device")
    if not isinstance(devices, list) or not devices:
        raise ValueError(f"spec file {path} has no [[device]] rows")
    rows = []
    for i, d in enumerate(devices):
        if not isinstance(d, dict):
            raise ValueError(f"{path}: device #{i + 1} is not a [[device]] table")
        where = f"{path}: device #{i + 1} ({d.get('name', 'no name')})"
        _check_types(d, where)
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        unknown = set(d) - set(REQUIRED) - set(OPTIONAL)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        bad = set(d["peaks"]) - set(PRECISIONS)
        if bad:
            raise ValueError(f"{where}: unknown precision(s) {', '.join(sorted(bad))}; use {', '.join(PRECISIONS)}")
        if not all(_positive(v) for v in d["peaks"].values()):
            raise ValueError(f"{where}: every peak must be a positive finite number (dense TFLOPS)")
        if isinstance(d["match"], str):
            d["match"] = [d["match"]]
        for pattern in d["match"]:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"{where}: bad match pattern {pattern!r}: {e}") from None
        rows.append(_row(d))
    return rows


TEXT_FIELDS = ("name", "source", "memory_type", "note")
NUMBER_FIELDS = ("sparse_factor", "memory_gb", "bandwidth_gbs", "power_w")


def _positive(v) -> bool:
    """A positive finite number of sane size (so no step of the claim arithmetic overflows)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and 1e-6 <= v <= 1e9


def _check_types(d: dict, where: str) -> None:
    """Each field of a [[device]] row has its type: text, positive finite numbers, lists of text."""
    for k in TEXT_FIELDS:
        if k in d and not isinstance(d[k], str):
            raise ValueError(f"{where}: {k} must be text")
    for k in NUMBER_FIELDS:
        if k in d and not _positive(d[k]):
            raise ValueError(f"{where}: {k} must be a positive finite number")
    if "peaks" in d and not isinstance(d["peaks"], dict):
        raise ValueError(f"{where}: peaks must be a table of precision = TFLOPS")
    for k in ("match", "unconfirmed"):
        v = d.get(k, [])
        if not (isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))):
            raise ValueError(f"{where}: {k} must be text or a list of text")


def add_spec_file(path: Path) -> list[SpecRow]:
    """Use a user's spec file: its rows are tried before the project's (add or override a device)."""
    rows = load_spec_file(path)
    _user_rows[:0] = rows
    return rows


def _row(d: dict) -> SpecRow:
    return SpecRow(
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


@cache
def project_table() -> tuple[SpecRow, ...]:
    """The project's rows (data/accelerators.toml), in file order."""
    return tuple(load_spec_file(SPEC_FILE))


def spec_table() -> tuple[SpecRow, ...]:
    """All rows: the user's spec files first (they override), then the project's."""
    return (*_user_rows, *project_table())


def find_spec(name: str) -> SpecRow | None:
    """A row by its exact name (as claims name devices), user rows first."""
    for row in spec_table():
        if row.name.lower() == name.lower():
            return row
    return None


def match_spec(device_name: str) -> SpecRow | None:
    """The spec row for a device name as NVML or torch reports it; None if no row matches."""
    for row in spec_table():
        if row.matches(device_name):
            return row
    return None


def use_spec_file(path: Path | None) -> None:
    """--spec FILE: the user's rows are tried before the project's table."""
    if path is None:
        return
    try:
        add_spec_file(path)
    except ValueError as e:
        raise UserError(str(e)) from None
