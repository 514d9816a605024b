"""Best published per-device results (harness/data/published.toml), matched to measured points.

A published row matches a point when the point's model is one of the row's `models` and the
point's device is the row's spec-table device. Beside the match, `claim` and `report` show our
fraction of the published figure: how far our software path is from the best known one on the
same device and workload, so that a verdict is not blamed on the device.

Rows: MLPerf Inference (per accelerator: the system's result / accelerators x nodes), MLPerf Power
(J/token from the system's wall power), ML.ENERGY (J/token from the GPUs' energy counters), gpt-fast.
Energy rows (`metric = "J/token"`) carry their measurement `scope`.
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
    round: str = ""  # "MLPerf Inference v5.1", "ML.ENERGY Benchmark v3.0"
    submitter: str = ""
    system: str = ""  # the submitted system's name
    division: str = ""  # MLPerf: closed or open
    accelerators: int = 1  # the system's accelerators x nodes the system value was divided by
    system_value: float | None = None  # the system's own figure, before that division
    scope: str = ""  # energy rows: what the joules cover ("whole-system wall power", "GPU energy counter")

    @property
    def precision_said(self) -> str:
        return self.precision or "precision not recorded"

    def short(self) -> str:
        """'95,089 samples/s, MLPerf Inference v5.0, NVIDIA': the figure, the round and who submitted it."""
        who = ", ".join(x for x in (self.round or self.source.split(" (", 1)[0], self.submitter) if x)
        return f"{self.value:,.6g} {self.metric}, {who}"

    def describe(self) -> str:
        """The figure and where it is from, short: the full source path stays in the data file."""
        where = self.source.split(" (", 1)[0]
        return f"{self.value:,.6g} {self.metric} ({where}; {self.precision_said}, {self.software})"


@functools.cache
def published_rows() -> tuple[Published, ...]:
    doc = tomllib.loads(FILE.read_text(encoding="utf-8"))
    return tuple(Published(**{**r, "models": tuple(r["models"])}) for r in doc.get("result", []))


def best_published(
    model: str,
    device_name: str,
    batch: int | None = None,
    precision: str | None = None,
    scenario: str | None = None,
) -> Published | None:
    """The highest published figure for this model's workload on this device (and, where the
    figure is for one batch size, at the same; `precision`, `scenario`: only those), or None."""
    row = match_spec(device_name)
    if row is None:
        return None
    found = [
        p
        for p in published_rows()
        if p.device == row.name
        and model in p.models
        and p.metric != "J/token"
        and (p.batch is None or p.batch == batch)
        and (precision is None or p.precision == precision)
        and (scenario is None or p.scenario == scenario)
    ]
    return max(found, key=lambda p: p.value, default=None)


def published_energy(model: str, device_name: str) -> list[Published]:
    """The published J/token rows for this model's workload on this device, lowest first."""
    row = match_spec(device_name)
    if row is None:
        return []
    found = [p for p in published_rows() if p.device == row.name and model in p.models and p.metric == "J/token"]
    return sorted(found, key=lambda p: p.value)
