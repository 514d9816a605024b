"""Compute claims ("11,000 P of intelligent compute") checked against nameplate data and measurements.

A claim file is TOML (see claims/README.md): `version = 1` and [[claim]] tables, each with an `id`,
the `text` as published, a `source`, and a `kind`:
- capacity:    p (PFLOPS), precision (or a list, or "unstated"), sparsity (dense|sparse|unstated),
               devices (spec-table names to size the fleet in), category (general|intelligent|
               supercomputing: the conventional precision when none is stated), utilisation (a stated
               fraction) and utilisation_of (peak_flops|cpu_time|allocated_hours);
- equivalence: p, computers (the claim "p P equals N computers"), precision;
- speedup:     before_s, after_s (a job that took before_s now takes after_s); optional cost_change
               (e.g. -0.5: the job's cost halved), devices_before, devices_after.
`check_claim` returns the arithmetic as numbered steps and a verdict; nothing is compared across
precisions: a measurement at another precision than the claim's is listed as not comparable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import UserError
from harness.inputs import read_toml
from harness.machine.published import best_published
from harness.machine.specs import PRECISIONS, find_spec
from harness.results.schema import LLMPoint, Point, read_peak
from harness.verdicts.cost import row_costs
from harness.verdicts.figures import Figures, point_figures

if TYPE_CHECKING:
    from harness.machine.published import Published

KINDS = {
    "capacity": {
        "required": ("p",),
        "optional": ("precision", "sparsity", "devices", "category", "utilisation", "utilisation_of"),
    },
    "equivalence": {"required": ("p", "computers"), "optional": ("precision",)},
    "speedup": {"required": ("before_s", "after_s"), "optional": ("cost_change", "devices_before", "devices_after")},
}
COMMON = ("id", "kind", "text", "source", "note")
# What "P" may have meant when the text does not say (claims/README.md explains the conventions)
UNSTATED = ("fp16", "int8", "fp32", "fp64")
DEFAULT_DEVICES = ("NVIDIA H100 SXM5 80GB", "NVIDIA H20 (China)", "NVIDIA A100 SXM4 80GB")
# How each category of compute is counted by convention (claims/README.md): the reading a verdict
# leads with when the text names the category but not the precision. An explicit precision wins.
CATEGORIES = {
    "general": ("fp32", "fp64"),  # 通用算力: CPUs, at FP32 or FP64
    "intelligent": ("fp16",),  # 智能算力: FP16, dense or the vendor's 2:4-sparse figure
    "supercomputing": (
        "fp64_tensor",
        "fp64",
    ),  # 超算算力: FP64, as HPL / TOP500 count it (tensor cores where a device has them)
}
# What a stated utilisation rate measures (claims/README.md)
UTILISATION_OF = {
    "peak_flops": "the share of the nameplate FLOPS actually delivered (what MFU measures)",
    "cpu_time": "the share of time the processors were busy, not how much of their peak that busy time used",
    "allocated_hours": "the share of device-hours rented or scheduled, not how much of the peak was used",
}


@dataclass
class Claim:
    id: str
    kind: str
    text: str
    source: str
    values: dict


@dataclass
class Verdict:
    """A claim checked: `headline` (the buyer's question answered in one line), `verdict` (a few
    sentences), `rows` (one per comparable measured point, best first: the table), `not_comparable`
    ((point, reason group, why) for the points that cannot bound the claim) and `steps` (the
    arithmetic, step by step: the appendix)."""

    claim: Claim
    steps: list[str] = field(default_factory=list)
    verdict: str = ""
    not_comparable: list[tuple[str, str, str]] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    headline: str = ""

    def rest(self) -> str:
        """The verdict without the sentence the headline already says."""
        v, h = self.verdict, self.headline
        return v[len(h) :].lstrip(". ") if h and v.startswith(h) else v

    def shown_rows(self, limit: int = 8) -> list[dict]:
        """The most informative rows: the best point of each (workload, device, precision) first, best
        first, then the rest; at most `limit`."""
        seen, first, rest = set(), [], []
        for r in self.rows:
            key = (r["workload"], r["device"], r["precision"])
            (rest if key in seen else first).append(r)
            seen.add(key)
        return (first + rest)[:limit]

    def not_comparable_summary(self) -> str:
        """The points that cannot bound the claim, counted by reason, in one sentence ('' if none)."""
        groups: dict[str, list[str]] = {}
        for _, group, why in self.not_comparable:
            groups.setdefault(group, []).append(why)
        parts = []
        precision: dict[str, list[str]] = {}  # claim precisions -> the precisions measured instead
        for group, whys in groups.items():
            if group.startswith("precision:"):
                _, measured, claim_in = group.split(":", 2)
                precision.setdefault(claim_in, []).extend([measured] * len(whys))
            else:
                parts.append(f"{len(whys)} with {group}")
        for claim_in, measured in precision.items():
            parts.insert(
                0, f"{len(measured)} measured at {', '.join(sorted(set(measured)))} (the claim is in {claim_in} P)"
            )
        return ("Not comparable: " + "; ".join(parts) + ".") if parts else ""


class ClaimError(UserError, ValueError):
    """A claim file that does not follow the format; the message names the file and the claim."""


def load_claim_files(paths: list[Path]) -> list[Claim]:
    """Every claim of every file, in order; a ClaimError (one line) for the first bad one."""
    return [c for p in paths for c in load_claims(p)]


def computer_from(peak_file: Path | None, cpu) -> dict:
    """The computer an equivalence claim is measured against: this machine's measured GEMM peaks
    from a `modelpower peak` file, else its computed nameplate (`cpu`: harness.machine.devices.CpuInfo)."""
    if peak_file is None:
        return {
            "name": f"this machine ({cpu.model}, {cpu.physical_cores} cores)",
            "how": "computed nameplate",
            "fp32": cpu.peak_fp32_tflops,
            "fp64": cpu.peak_fp64_tflops,
        }
    doc = read_peak(Path(peak_file))
    gemm = {r["precision"]: r["measured_tflops"] for r in doc["gemm"]}
    name = doc["device_name"]
    return {
        "name": f"{name} ({doc['device']})",
        "how": f"measured by modelpower peak, {peak_file}",
        "fp32": gemm.get("fp32"),
        "fp64": gemm.get("fp64"),
    }


def load_claims(path: Path) -> list[Claim]:
    """Parse and check a claim file."""
    try:
        raw = read_toml(path, "claim file")
    except UserError as e:
        raise ClaimError(str(e)) from None
    if type(raw.get("version")) is not int or raw["version"] != 1:
        raise ClaimError(f"claim file {path}: needs `version = 1` at the top")
    items = raw.get("claim")
    if not isinstance(items, list) or not items:
        raise ClaimError(f"claim file {path}: no [[claim]] tables")
    claims, seen = [], set()
    for i, c in enumerate(items):
        if not isinstance(c, dict):
            raise ClaimError(f"claim file {path}: claim #{i + 1} is not a [[claim]] table")
        where = f"claim file {path}: claim #{i + 1} ({c.get('id', 'no id')})"
        _check_types(c, where)
        kind = c.get("kind")
        if kind not in KINDS:
            raise ClaimError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if "id" not in c:
            raise ClaimError(f"{where}: missing id")
        if c["id"] in seen:
            raise ClaimError(f"{where}: id {c['id']!r} is used twice")
        seen.add(c["id"])
        missing = [k for k in KINDS[kind]["required"] if k not in c]
        if missing:
            raise ClaimError(f"{where}: a {kind} claim needs {', '.join(missing)}")
        unknown = set(c) - set(COMMON) - set(KINDS[kind]["required"]) - set(KINDS[kind]["optional"])
        if unknown:
            raise ClaimError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        for k in ("p", "computers", "before_s", "after_s", "devices_before", "devices_after"):
            v = c.get(k, 1)
            if isinstance(v, bool) or not isinstance(v, int | float) or not (1e-6 <= v <= 1e12):
                # the bounds keep every step's arithmetic finite (1e12 P is 1e27 FLOPS)
                raise ClaimError(f"{where}: {k} must be a positive finite number in [1e-6, 1e12], got {v!r}")
        precisions = _precisions(c.get("precision", "unstated"))
        if precisions is None:
            raise ClaimError(f"{where}: precision must be 'unstated' or from {', '.join(PRECISIONS)}")
        if c.get("sparsity", "unstated") not in ("dense", "sparse", "unstated"):
            raise ClaimError(f"{where}: sparsity must be dense, sparse or unstated")
        if ("devices_before" in c) != ("devices_after" in c):
            raise ClaimError(f"{where}: devices_before and devices_after go together")
        for k in ("devices_before", "devices_after"):
            if k in c and (isinstance(c[k], bool) or not isinstance(c[k], int)):
                raise ClaimError(f"{where}: {k} must be a whole number of devices, got {c[k]!r}")
        cc = c.get("cost_change", 0)
        if isinstance(cc, bool) or not isinstance(cc, int | float) or not (-1 < cc <= 100):
            raise ClaimError(f"{where}: cost_change must be a fraction above -1 (-0.5: the cost halved), got {cc!r}")
        if c.get("category", "general") not in CATEGORIES:
            raise ClaimError(f"{where}: category must be one of {', '.join(CATEGORIES)}")
        u = c.get("utilisation", 0.5)
        if isinstance(u, bool) or not isinstance(u, int | float) or not (0 < u <= 1):
            raise ClaimError(f"{where}: utilisation must be a fraction in (0, 1], got {u!r}")
        if ("utilisation" in c) != ("utilisation_of" in c):
            raise ClaimError(f"{where}: utilisation and utilisation_of go together")
        if c.get("utilisation_of", "peak_flops") not in UTILISATION_OF:
            raise ClaimError(f"{where}: utilisation_of must be one of {', '.join(UTILISATION_OF)}")
        for d in c.get("devices", ()):
            if find_spec(d) is None:
                raise ClaimError(f"{where}: device {d!r} is not in the spec table (`modelpower devices`, --spec)")
        values = {k: v for k, v in c.items() if k not in COMMON}
        claims.append(Claim(c["id"], kind, c.get("text", ""), c.get("source", ""), values))
    return claims


# every field's type; numbers are checked for sign and finiteness apart
FIELD_TYPES = {
    "id": str,
    "kind": str,
    "text": str,
    "source": str,
    "note": str,
    "precision": str | list,
    "sparsity": str,
    "devices": list,
    "category": str,
    "utilisation_of": str,
}


def _check_types(c: dict, where: str) -> None:
    for k, tp in FIELD_TYPES.items():
        if k in c and not isinstance(c[k], tp):
            raise ClaimError(f"{where}: {k} must be {'text' if tp is str else 'text or a list of text'}")
    for k in ("precision", "devices"):
        if isinstance(c.get(k), list) and not all(isinstance(v, str) for v in c[k]):
            raise ClaimError(f"{where}: {k} must be a list of text")


def _precisions(value) -> tuple[str, ...] | None:
    if value == "unstated":
        return UNSTATED
    vals = (value,) if isinstance(value, str) else tuple(value)
    return vals if vals and all(v in PRECISIONS for v in vals) else None


def _x(r: float) -> str:
    """A ratio: one decimal from 1 up, two significant digits below (0.03x, not 0.0x)."""
    return f"{r:.1f}" if r >= 1 else f"{r:.2g}"


def _n(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.3g}"


@dataclass(frozen=True)
class _Reading:
    """How a capacity claim's P is read: at which precisions, in order, and by what convention."""

    precisions: tuple[str, ...]
    conventional: tuple[str, ...]  # the category's conventional precisions, read first; () without one
    category: str | None  # None where the text states the precision: an explicit precision wins
    stated: bool
    how: str  # the arithmetic's words for how the precisions were chosen
    sparsity: str


def _reading(values: dict) -> _Reading:
    """The precisions a capacity claim is read at: as stated; else the category's conventional ones
    first, each other plausible one after them."""
    precisions = _precisions(values.get("precision", "unstated"))
    stated = values.get("precision", "unstated") != "unstated"
    sparsity = values.get("sparsity", "unstated")
    category = values.get("category") if not stated else None
    if not category:
        how = "as stated" if stated else "not stated: each plausible one"
        return _Reading(precisions, (), None, stated, how, sparsity)
    conventional = CATEGORIES[category]
    how = (
        f"not stated: {category} compute is counted at {'/'.join(conventional)} by convention (read first); "
        "each other plausible one after it"
    )
    rest = tuple(q for q in precisions if q not in conventional)
    return _Reading((*conventional, *rest), conventional, category, stated, how, sparsity)


def _reading_step(p: float, r: _Reading) -> str:
    """The arithmetic's first step: the claim in TFLOPS and the precisions it is read at."""
    return f"{_n(p)} P = {_n(p * 1000)} TFLOPS. Precision {r.how}: {', '.join(r.precisions)}; sparsity: {r.sparsity}."


# precisions at which a device's vendor may quote a 2:4-sparse figure
SPARSE_PRECISIONS = ("tf32", "bf16", "fp16", "fp8", "int8")


@dataclass(frozen=True)
class _Fleet:
    """The fleet a claim's TFLOPS make of one device at one precision (`count` None: no nameplate figure)."""

    precision: str
    device: str
    peak: float | None = None  # dense nameplate TFLOPS
    count: float | None = None  # devices at the dense peak
    sparse_peak: float | None = None  # the vendor's 2:4-sparse figure, where one is quoted
    sparse_count: float | None = None
    megawatts: float | None = None  # the dense fleet's nameplate power, where the spec has one
    power_w: float | None = None
    unconfirmed: bool = False


def _fleet(tflops: float, precision: str, name: str) -> _Fleet:
    """How many of the spec table's device `name` make `tflops` at their `precision` peak, and what they draw."""
    row = find_spec(name)
    peak = row.peak_tflops(precision)
    if peak is None:
        return _Fleet(precision, row.name)
    count = tflops / peak
    sparse = bool(row.sparse_factor) and precision in SPARSE_PRECISIONS
    return _Fleet(
        precision,
        row.name,
        peak,
        count,
        sparse_peak=peak * row.sparse_factor if sparse else None,
        sparse_count=count / row.sparse_factor if sparse else None,
        megawatts=count * row.power_w / 1e6 if row.power_w else None,
        power_w=row.power_w,
        unconfirmed=bool(set(row.unconfirmed) & {precision, "power_w"}),
    )


def _fleet_step(tflops: float, f: _Fleet, example: bool = False) -> str:
    """One fleet-sizing step of the arithmetic."""
    if f.count is None:
        return f"{f.precision} on {f.device}: no nameplate {f.precision} figure: cannot size the fleet."
    line = f"{f.precision} on {f.device}: {_n(tflops)} / {f.peak:g} TFLOPS dense = {_n(f.count)} devices"
    if f.sparse_count is not None:
        line += f"; if the vendor's 2:4-sparse figure ({f.sparse_peak:g}) was counted: {_n(f.sparse_count)}"
    if f.megawatts is not None:
        line += f"; nameplate power {_n(f.megawatts)} MW at {f.power_w:g} W each"
    if f.unconfirmed:
        line += " (unconfirmed spec figures)"
    if example:
        line += " (an example device: the claim names none)"
    return line + "."


@dataclass(frozen=True)
class _Bound:
    """A measured point that bounds the claim: what the claim's P delivers at its MFU, the power that
    draws, what it costs and the best published figure for the same device and workload."""

    fig: Figures
    precision: str  # its MFU's precision: the reading of the claim it bounds
    label: str
    p_equivalent: float
    megawatts: float | None  # None: energy not measured
    priced: bool  # prices were given and the point is a vision one (an LLM's FLOPS are not what it costs)
    cost: float | None  # per PFLOP-hour at the prices
    published: Published | None

    @property
    def estimated(self) -> bool:
        """Its power comes from an energy ESTIMATE (--assume-watts), not a measurement."""
        return self.megawatts is not None and bool(self.fig.energy and self.fig.energy.get("estimate"))

    @property
    def of_published(self) -> float | None:
        """Its throughput as a fraction of the best published figure."""
        return self.fig.throughput / self.published.value if self.published is not None else None


def _label(f: Figures) -> str:
    return f"{f.workload} on {f.device_name} ({f.precision}, batch {f.batch_size})"


def _not_comparable(f: Figures, precision: str, precisions: tuple[str, ...]) -> tuple[str, str] | None:
    """(reason group, why) a measured point cannot bound a claim read at `precisions`; None if it can."""
    claim_in = "/".join(precisions)
    if f.mfu is None and f.mfu_missing:  # a served point whose server's device or precision is not known
        return "MFU not computed (the server's device or precision not known)", f.mfu_missing
    if precision not in precisions:
        return f"precision:{precision}:{claim_in}", f"measured at {precision}, the claim is in {claim_in} P"
    if f.mfu is None:
        return "MFU unknown (no nameplate peak)", f"MFU unknown (no nameplate {precision} peak for its device)"
    if f.mfu > 1:
        why = (
            f"MFU {100 * f.mfu:.0f}% > 100%, so its denominator ({f.mfu_peak_tflops:g} TFLOPS) is below the "
            "device's real peak; it cannot bound a claim"
        )
        return "MFU above 100% (its denominator is below the real peak)", why
    return None


def _bounds(
    p: float, points: list[Point | LLMPoint], precisions: tuple[str, ...], prices
) -> tuple[list[_Bound], list[tuple[str, str, str]]]:
    """The measured points that bound the claim, in the order given, and (label, reason group, why)
    for each of the others."""
    bounds, others = [], []
    for f in map(point_figures, points):
        precision = f.mfu_precision or f.precision
        why = _not_comparable(f, precision, precisions)
        if why is None:
            bounds.append(_bound(p, f, precision, prices))
        else:
            others.append((_label(f), *why))
    return bounds, others


def _bound(p: float, f: Figures, precision: str, prices) -> _Bound:
    """What the claim's P delivers at a comparable point's MFU, and at what power and cost."""
    p_eq = p * f.mfu
    priced = prices is not None and prices.given() and not f.llm
    return _Bound(
        fig=f,
        precision=precision,
        label=_label(f),
        p_equivalent=p_eq,
        megawatts=p_eq * f.joules_per_pflop / 1e6 if f.joules_per_pflop is not None else None,
        priced=priced,
        cost=_cost_value(f, prices) if priced else None,
        published=_published(f),
    )


def _bound_step(p: float, b: _Bound, prices) -> str:
    """The arithmetic of one point that bounds the claim."""
    f = b.fig
    line = (
        f"{b.label}: measured MFU {100 * f.mfu:.1f}% (of {f.mfu_peak_tflops:g} TFLOPS {b.precision}) -> {_n(p)} P "
        f"of such devices deliver {_n(b.p_equivalent)} P-equivalent on this workload"
    )
    if b.megawatts is not None:
        how = "an ESTIMATED (--assume-watts, not measured)" if b.estimated else "the measured"
        line += f", drawing {_n(b.megawatts)} MW at {how} {_n(f.joules_per_pflop)} J/PFLOP"
    else:
        line += "; power on this workload not measured (no energy counter for that run)"
    if b.priced:
        line += _cost_text(b.cost, prices, b.estimated)
    if b.published is not None:
        line += _published_step(b)
    return line + "."


def _published_step(b: _Bound) -> str:
    """'; the best published figure ... is X: ours is N% of it ...' for a point with a published figure."""
    pub, frac = b.published, b.of_published
    cross = f" ({_counted_against(b)})" if pub.precision != b.precision else ""
    return (
        f"; the best published figure on this device and workload is {pub.describe()}: ours is "
        f"{100 * frac:.1f}% of it, and at that figure the claim's devices would deliver "
        f"{_n(b.p_equivalent / frac)} P-equivalent{cross}"
    )


def _counted_against(b: _Bound) -> str:
    """What a published figure at another precision than the point's MFU is counted against."""
    return f"{b.published.precision_said} run counted against the {b.precision} peak"


def _table_row(b: _Bound) -> dict:
    """A point that bounds the claim as a row of the verdict's table."""
    f = b.fig
    row = {
        "workload": f.workload,
        "device": f.device_name,
        "precision": b.precision,
        "run_precision": f.precision,
        "batch": f.batch_size,
        "tflops": f.delivered_tflops,
        "mfu": f.mfu,
        "p_equivalent": b.p_equivalent,
        "joules_per_pflop": f.joules_per_pflop,
        "megawatts": b.megawatts,
        "energy_estimated": b.estimated,
        "cost_per_pflop_hour": b.cost,
        "of_published": None,
        "p_equivalent_at_published": None,
        "published": None,
        "peak_lower_bound": "lower bound" in (f.mfu_peak_source or ""),
    }
    if b.published is not None:
        row["of_published"] = b.of_published
        row["p_equivalent_at_published"] = b.p_equivalent / b.of_published
        row["published"] = b.published.short()
        row["published_precision"] = b.published.precision
    return row


def check_capacity(claim: Claim, points: list[Point | LLMPoint], prices=None) -> Verdict:
    """A capacity claim against nameplate fleets and measured MFU: the figures first (the reading, the
    fleets, the points that bound the claim and those that cannot), then the arithmetic, the table and
    the verdict written from them."""
    p, reading = claim.values["p"], _reading(claim.values)
    named = bool(claim.values.get("devices"))
    devices = claim.values.get("devices") or DEFAULT_DEVICES
    fleets = [_fleet(p * 1000, precision, name) for precision in reading.precisions for name in devices]
    bounds, others = _bounds(p, points, reading.precisions, prices)
    v = Verdict(claim, not_comparable=others)
    v.steps = [
        _reading_step(p, reading),
        *(_fleet_step(p * 1000, f, example=not named) for f in fleets),
        *(_bound_step(p, b, prices) for b in bounds),
        *(f"not comparable: {label}: {why}." for label, _, why in others),
    ]
    v.rows = sorted(map(_table_row, bounds), key=lambda r: -r["p_equivalent"])
    if "utilisation" in claim.values:
        _utilisation(v, claim, bounds)
    v.verdict = _capacity_verdict(p, reading, bounds, fleets)
    v.headline = _capacity_headline(p, v.rows, reading.conventional or reading.precisions)
    return v


def _capacity_verdict(p: float, reading: _Reading, bounds: list[_Bound], fleets: list[_Fleet]) -> str:
    """The verdict: what the claim's P delivers on measured work, read as its category counts, and how far
    an unstated precision moves the fleet size."""
    text = _delivered_verdict(p, reading, bounds)
    if reading.category:
        text = f"Read as {reading.category} compute ({'/'.join(reading.conventional)} by convention): " + text
    if not reading.stated:
        counts = [f.count for f in fleets if f.count is not None]
        spread = f"{max(counts) / min(counts):.0f}x between the readings above." if counts else "?"
        text += " The text does not state the precision: the fleet size differs by up to " + spread
    return text


def _delivered_verdict(p: float, reading: _Reading, bounds: list[_Bound]) -> str:
    """What the claim's P delivers at best on measured work, led by the conventional reading's points."""
    conventional = [b for b in bounds if b.precision in reading.conventional]
    if reading.category and bounds and not conventional:
        b = max(bounds, key=lambda x: x.p_equivalent)
        return (
            f"{_n(p)} P is a nameplate sum; no measurement at {'/'.join(reading.conventional)} (the conventional "
            f"reading) was given, so what it delivers there is not measured; read at {b.precision} instead, "
            f"measured work delivers at most {_n(b.p_equivalent)} P-equivalent ({b.fig.workload} on "
            f"{b.fig.device_name})."
        )
    if not bounds:
        return (
            f"{_n(p)} P can be true only as a nameplate sum at the precisions in the arithmetic; no measurement at "
            f"{'/'.join(reading.precisions)} was given, so what it delivers on real work is not measured."
        )
    lead = conventional or bounds
    return _best_verdict(p, max(lead, key=lambda x: x.p_equivalent)) + _published_verdict(lead)


def _best_verdict(p: float, b: _Bound) -> str:
    """The verdict's sentence on the point that delivers the most."""
    f = b.fig
    text = (
        f"{_n(p)} P is a nameplate sum; read at {f.mfu_precision}, on measured work it delivers at most "
        f"{_n(b.p_equivalent)} P-equivalent ({f.workload}, MFU {100 * f.mfu:.1f}% measured on {f.device_name}; a "
        f"fleet of other devices reaches its own MFU): the P figure overstates useful compute at least "
        f"{p / b.p_equivalent:.1f}x."
    )
    if f.mfu_peak_source and "lower bound" in f.mfu_peak_source:
        text += " (That MFU's denominator is a lower bound of the device's peak, so it reads high.)"
    return text


def _published_verdict(lead: list[_Bound]) -> str:
    """Our best point on a workload with a published figure against that figure ('' if none has one)."""
    with_pub = [b for b in lead if b.published is not None]
    if not with_pub:
        return ""
    b = max(with_pub, key=lambda x: x.p_equivalent)
    pub, f = b.published, b.fig
    cross = f"; {_counted_against(b)}" if pub.precision != b.precision else ""
    return (
        f" On {f.workload}, our best measured point gives {_n(b.p_equivalent)} P-equivalent; at the best published "
        f"figure for the same device and workload ({pub.value:,.6g} {pub.metric}, {pub.software}{cross}) the "
        f"claim's devices would deliver {_n(b.p_equivalent * pub.value / f.throughput)} P-equivalent: the gap "
        "between those two is software (and precision), not the device."
    )


def _capacity_headline(p: float, rows: list[dict], read_at: tuple[str, ...]) -> str:
    """ "N P claimed → at most M P-equivalent on this work (X% of nameplate); best published: Y"."""
    lead = [r for r in rows if r["precision"] in read_at] or rows
    if not lead:
        return f"{_n(p)} P claimed → what it delivers on real work is not measured (no comparable measurement)"
    best = max(lead, key=lambda r: r["p_equivalent"])
    at = "" if best["precision"] in read_at else f", read at {best['precision']}"
    high = ", against a lower-bound peak: reads high" if best["peak_lower_bound"] else ""
    line = (
        f"{_n(p)} P claimed → at most {_n(best['p_equivalent'])} P-equivalent on this work "
        f"({100 * best['mfu']:.1f}% of nameplate{high}, {best['workload']} on {best['device']}{at})"
    )
    pubs = [r for r in lead if r["p_equivalent_at_published"]]
    if pubs:
        top = max(pubs, key=lambda r: r["p_equivalent_at_published"])
        line += (
            f"; at the best published figure: {_n(top['p_equivalent_at_published'])} P-equivalent "
            f"({top['workload']}, {top['published']})"
        )
        if top["p_equivalent_at_published"] > p:  # an implied MFU above 100%: another precision's run
            run = top["published_precision"] or "at an unrecorded precision"
            line += f", above the claim itself: that run is {run}, counted against the {top['precision']} peak"
    else:
        line += "; no published figure for these workloads and devices"
    return line


def _utilisation(v: Verdict, claim: Claim, bounds: list[_Bound]) -> None:
    """A stated utilisation rate against the measured MFU: what it says and does not say."""
    p, u, of = claim.values["p"], claim.values["utilisation"], claim.values["utilisation_of"]
    v.steps.append(f"stated utilisation {100 * u:.0f}% of {of.replace('_', ' ')}: {UTILISATION_OF[of]}.")
    best = max(bounds, key=lambda x: x.p_equivalent).fig if bounds else None
    if of == "peak_flops":
        line = f"taken as delivered compute it claims {_n(p * u)} P of useful work ({_n(p)} x {u:g})"
        if best is not None:
            line += (
                f"; the best measured MFU here is {100 * best.mfu:.1f}% ({best.workload}): the stated rate is "
                f"{u / best.mfu:.1f}x what was measured"
            )
        v.steps.append(line + ".")
    else:
        line = f"a busy rate bounds delivered compute only together with MFU: at most {_n(p * u)} P-equivalent"
        if best is not None:
            line += (
                f", and with the best measured MFU ({100 * best.mfu:.1f}%, {best.workload}) "
                f"{_n(p * u * best.mfu)} P-equivalent at that MFU ({_n(p)} x {u:g} x {best.mfu:.3g})"
            )
        v.steps.append(line + ".")


def check_equivalence(claim: Claim, computer: dict) -> Verdict:
    """`computer`: {"name", "fp64", "fp32", "how"} TFLOPS of a real computer (this machine)."""
    v = Verdict(claim)
    p, n = claim.values["p"], claim.values["computers"]
    per = p * 1e15 / n / 1e12
    v.steps.append(f"{_n(p)} P / {_n(n)} computers = {per:.3g} TFLOPS per 'computer' (precision not stated).")
    ratios = []
    for prec in ("fp32", "fp64"):
        have = computer.get(prec)
        if have:
            ratios.append((prec, per / have))
            v.steps.append(
                f"{computer['name']} ({computer['how']}): {have:.3g} TFLOPS {prec} -> one 'computer' = "
                f"{_x(per / have)} of this machine at {prec}."
            )
    if not ratios:
        v.verdict = "No measured computer to compare with (run `modelpower peak` and pass --peak)."
        return v
    v.verdict = (
        f"The equivalence needs {per:.3g} TFLOPS per computer: "
        + ", ".join(f"{_x(r)}x this machine at {prec}" for prec, r in ratios)
        + ". It holds only for a computer that large, at a precision the text does not give; "
        "other published equivalences use 0.2 and 0.5 TFLOPS per computer, so the conversion is not fixed."
    )
    return v


def scaling_efficiency(points: list) -> tuple[float, str]:
    """Throughput of N devices / (N x one device alone), from a multi-device (torchrun) aggregate
    point and a single-device point of the same model, backend, precision, batch and device; 1.0
    (said so) when no such pair was measured."""
    singles = {
        (p.model, p.backend, p.precision, p.batch_size, p.device_name): p.throughput_sps
        for p in points
        if isinstance(p, Point) and p.rank is None and not p.aggregate
    }
    for p in points:
        if isinstance(p, Point) and p.aggregate and p.world_size:
            device = re.sub(r"^\d+ x ", "", p.device_name)  # an aggregate is named "2 x AMD EPYC"
            one = singles.get((p.model, p.backend, p.precision, p.batch_size, device))
            if one:
                e = p.throughput_sps / (p.world_size * one)
                return e, (
                    f"measured: {p.model} on {p.world_size} x {p.device_name} ran {p.throughput_sps:,.4g}/s "
                    f"against {one:,.4g}/s on one, {100 * e:.0f}% scaling efficiency"
                )
    return 1.0, "assumed 1.0 (perfect scaling): no multi-device result beside a single-device one was given"


def check_speedup(claim: Claim, points: list | None = None, prices=None) -> Verdict:
    v = Verdict(claim)
    a, b = claim.values["before_s"], claim.values["after_s"]
    speed = a / b
    v.steps.append(f"{_n(a)} s -> {_n(b)} s: the same work done {speed:.3g}x faster.")
    n0, n1 = claim.values.get("devices_before"), claim.values.get("devices_after")
    if n0 is None or n1 is None:
        v.steps.append(
            f"At an unchanged MFU that needs {speed:.3g}x the delivered FLOPS (devices x peak); at the same "
            "hardware it needs the MFU itself to rise that much, which is impossible past 100%."
        )
        v.verdict = f"Plausible only with {speed:.3g}x the delivered compute, or with less work per job."
    else:
        eff, how = scaling_efficiency(points or [])
        assumed = how.startswith("assumed")
        v.steps.append(f"scaling efficiency: {how}.")
        expected = a * n0 / (n1 * eff) if n1 > n0 else a * n0 / n1  # the efficiency applies to an increase only
        per_device = expected / b
        at = (" assuming linear scaling" if assumed else " at that efficiency") if n1 > n0 else ""
        v.steps.append(
            f"{_n(n0)} -> {_n(n1)} devices{at} would take {_n(expected)} s; the "
            f"claimed {_n(b)} s needs each device to do the work {per_device:.3g}x faster as well."
        )
        what = "The extra devices explain" if n1 > n0 else "The change in device count accounts for"
        basis = f" (assuming linear scaling across {_n(n1)} devices: none was measured)" if assumed and n1 > n0 else ""
        v.verdict = (
            f"{what} {a / expected:.3g}x of the {speed:.3g}x{basis}; the rest ({per_device:.3g}x) needs faster "
            "devices or software, or less work per job."
        )
    if "cost_change" in claim.values:
        _speedup_cost(v, claim, prices)
    return v


def _speedup_cost(v: Verdict, claim: Claim, prices) -> None:
    """What price per device-hour (and per kWh) a claimed cost change requires."""
    a, b, cc = claim.values["before_s"], claim.values["after_s"], claim.values["cost_change"]
    n0, n1 = claim.values.get("devices_before", 1), claim.values.get("devices_after", 1)
    dh0, dh1 = n0 * a / 3600, n1 * b / 3600
    said = "" if "devices_before" in claim.values else " (device counts not stated: read as equal)"
    v.steps.append(
        f"device-hours per job: {n0:g} x {_n(a)} s = {dh0:.4g} before, {n1:g} x {_n(b)} s = {dh1:.4g} after{said}."
    )
    ratio = (1 + cc) * dh0 / dh1  # the price per device-hour after, relative to before, that gives the cost change
    line = f"a cost change of {100 * cc:+.0f}% holds if a device-hour after costs at most {ratio:.3g}x one before"
    if prices is not None and prices.per_device_hour is not None:
        line += f" ({prices.per_device_hour:g} -> {prices.per_device_hour * ratio:.4g} per device-hour)"
    v.steps.append(
        line + f"; if the devices cost the same per hour, the cost changes by {100 * (dh1 / dh0 - 1):+.0f}%."
    )
    v.steps.append(
        f"the same work at the same J/PFLOP uses the same energy: an energy cost change of {100 * cc:+.0f}% needs the "
        f"price per kWh x {1 + cc:.3g}"
        + (
            f" ({prices.per_kwh:g} -> {prices.per_kwh * (1 + cc):.4g})"
            if prices is not None and prices.per_kwh is not None
            else ""
        )
        + ", or less energy per FLOP (measured J/PFLOP in the results shows what a device draws)."
    )
    v.verdict += (
        f" The {100 * cc:+.0f}% cost holds if a device-hour after costs at most {ratio:.3g}x one "
        f"before (the job uses {dh1 / dh0:.3g}x the device-hours); if energy is the cost, at the same "
        f"J/PFLOP it needs {1 + cc:.3g}x the price per kWh."
    )


def _published(f: Figures) -> Published | None:
    """The best published result for a measured vision point's device and workload, or None."""
    if f.llm or not f.throughput or f.devices > 1:  # published figures are per device
        return None

    return best_published(f.model, f.device_name)


def _cost_text(cost: float | None, prices, estimated: bool = False) -> str:
    """'; a PFLOP-hour of this work costs X (prices)' for a measured point, or why not."""
    if cost is None:
        return f"; its cost per PFLOP-hour is not measured at {prices.label()} (energy not measured)"
    est = " (its energy part ESTIMATED from --assume-watts)" if estimated else ""
    return f"; a PFLOP-hour of this work costs {cost:,.4g} at {prices.label()}{est}"


def _cost_value(f: Figures, prices) -> float | None:
    """What a PFLOP-hour of this point's work costs at `prices`, or None (energy not measured)."""
    row = {"kind": "vision", "delivered_tflops": f.delivered_tflops, "joules_per_pflop": f.joules_per_pflop}
    return row_costs(row, prices, f.devices)["per_pflop_hour"]


def check_claim(claim: Claim, points: list[Point], computer: dict, prices=None) -> Verdict:
    if claim.kind == "capacity":
        return check_capacity(claim, points, prices)
    equivalence = claim.kind == "equivalence"
    v = check_equivalence(claim, computer) if equivalence else check_speedup(claim, points, prices)
    v.headline = v.verdict.split(". ", 1)[0].rstrip(".") if v.verdict else ""
    return v
