"""Best published per-device results (harness/data/published.toml), matched to measured points.

A published row matches a point when the point's model is one of the row's `models` and the
point's device is the row's spec-table device. Beside the match, `claim` and `report` show our
fraction of the published figure: how far our software path is from the best known one on the
same device and workload, so that a verdict is not blamed on the device.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass

from harness import DATA_DIR
from harness.machine.specs import match_spec

FILE = DATA_DIR / "published.toml"


@dataclass(frozen=True)
class Published:
    device: str
    workload: str
    models: tuple[str, ...]
    scenario: str
    metric: str
    value: float
    precision: str
    software: str
    source: str
    batch: int | None = None  # the batch the figure is for (LLM decode); None: any (a throughput figure)

    def describe(self) -> str:
        """The figure and where it is from, short: the full source path stays in the data file."""
        where = self.source.split(" (", 1)[0]
        return f"{self.value:,.6g} {self.metric} ({where}; {self.precision}, {self.software})"


@functools.cache
def published_rows() -> tuple[Published, ...]:
    doc = tomllib.loads(FILE.read_text(encoding="utf-8"))
    return tuple(Published(**{**r, "models": tuple(r["models"])}) for r in doc.get("result", []))


def best_published(
    model: str, device_name: str, batch: int | None = None, precision: str | None = None
) -> Published | None:
    """The highest published figure for this model's workload on this device (and, where the
    figure is for one batch size or one precision, at the same), or None."""
    row = match_spec(device_name)
    if row is None:
        return None
    found = [p for p in published_rows() if p.device == row.name and model in p.models
             and (p.batch is None or p.batch == batch) and (precision is None or p.precision == precision)]  # fmt: skip
    return max(found, key=lambda p: p.value, default=None)
