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

from harness.errors import UserError
from harness.inputs import read_toml
from harness.machine.specs import PRECISIONS, find_spec
from harness.results.schema import LLMPoint, Point, read_peak

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
            parts.insert(0, f"{len(measured)} measured at {', '.join(sorted(set(measured)))} (the claim is in "
                            f"{claim_in} P)")  # fmt: skip
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
        return {"name": f"this machine ({cpu.model}, {cpu.physical_cores} cores)", "how": "computed nameplate",
                "fp32": cpu.peak_fp32_tflops, "fp64": cpu.peak_fp64_tflops}  # fmt: skip
    doc = read_peak(Path(peak_file))
    gemm = {r["precision"]: r["measured_tflops"] for r in doc["gemm"]}
    name = doc["device_name"]
    return {"name": f"{name} ({doc['device']})", "how": f"measured by modelpower peak, {peak_file}",
            "fp32": gemm.get("fp32"), "fp64": gemm.get("fp64")}  # fmt: skip


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
FIELD_TYPES = {"id": str, "kind": str, "text": str, "source": str, "note": str, "precision": str | list,
               "sparsity": str, "devices": list, "category": str, "utilisation_of": str}  # fmt: skip


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


@dataclass
class _Measured:
    """What a claim needs from a result point, vision or LLM (LLM: prefill, the compute-bound phase)."""

    model: str
    device_name: str
    precision: str
    batch_size: int
    mfu: float | None
    mfu_precision: str | None
    mfu_peak_tflops: float | None
    mfu_peak_source: str | None
    joules_per_pflop: float | None
    energy: dict | None
    delivered_tflops: float | None = None
    llm: bool = False
    raw_model: str = ""
    throughput: float | None = None
    devices: int = 1  # a torchrun aggregate point sums this many devices


def _measured(pt) -> _Measured:
    if isinstance(pt, LLMPoint) and pt.served:
        name, mfu, mfu_prec = f"{pt.model} served", pt.served.get("mfu"), pt.precision
    elif isinstance(pt, LLMPoint):
        name, mfu, mfu_prec = f"{pt.model} prefill", pt.prefill_mfu, pt.compute_precision or pt.precision
    else:
        name, mfu, mfu_prec = pt.model, pt.mfu, pt.mfu_precision
    llm = isinstance(pt, LLMPoint)
    return _Measured(name, pt.device_name, pt.precision, pt.batch_size, mfu, mfu_prec, pt.mfu_peak_tflops,
                     pt.mfu_peak_source, pt.joules_per_pflop, pt.energy,
                     (pt.served or {}).get("delivered_tflops", pt.prefill_tflops) if llm else pt.delivered_tflops,
                     llm, pt.model,
                     None if llm else pt.throughput_sps,
                     pt.world_size if not llm and pt.aggregate and pt.world_size else 1)  # fmt: skip


def check_capacity(claim: Claim, points: list[Point | LLMPoint], prices=None) -> Verdict:
    v = Verdict(claim)
    p = claim.values["p"]
    precisions = _precisions(claim.values.get("precision", "unstated"))
    sparsity = claim.values.get("sparsity", "unstated")
    devices = claim.values.get("devices") or DEFAULT_DEVICES
    stated = claim.values.get("precision", "unstated") != "unstated"
    category = claim.values.get("category") if not stated else None  # an explicit precision wins
    how = "as stated" if stated else "not stated: each plausible one"
    conventional = CATEGORIES[category] if category else ()
    if category:  # the conventional reading first, the other plausible ones after it
        precisions = (*conventional, *(q for q in precisions if q not in conventional))
        how = (f"not stated: {category} compute is counted at {'/'.join(conventional)} by convention (read first); "
               "each other plausible one after it")  # fmt: skip
    v.steps.append(
        f"{_n(p)} P = {_n(p * 1000)} TFLOPS. Precision {how}: {', '.join(precisions)}; sparsity: {sparsity}."
    )
    sizes = []
    for prec in precisions:
        for name in devices:
            row = find_spec(name)
            peak = row.peak_tflops(prec)
            if peak is None:
                v.steps.append(f"{prec} on {row.name}: no nameplate {prec} figure: cannot size the fleet.")
                continue
            dense_n = p * 1000 / peak
            line = f"{prec} on {row.name}: {_n(p * 1000)} / {peak:g} TFLOPS dense = {_n(dense_n)} devices"
            if row.sparse_factor and prec in ("tf32", "bf16", "fp16", "fp8", "int8"):
                sparse = peak * row.sparse_factor
                line += (
                    f"; if the vendor's 2:4-sparse figure ({sparse:g}) was counted: {_n(dense_n / row.sparse_factor)}"
                )
            if row.power_w:
                line += f"; nameplate power {_n(dense_n * row.power_w / 1e6)} MW at {row.power_w:g} W each"
            if set(row.unconfirmed) & {prec, "power_w"}:
                line += " (unconfirmed spec figures)"
            v.steps.append(line + ".")
            sizes.append((prec, row.name, dense_n))
    delivered = []
    for pt in map(_measured, points):
        prec = pt.mfu_precision or pt.precision
        label = f"{pt.model} on {pt.device_name} ({pt.precision}, batch {pt.batch_size})"
        if prec not in precisions:
            v.not_comparable.append(
                (label, f"precision:{prec}:{'/'.join(precisions)}", f"measured at {prec}, the claim is in "
                 f"{'/'.join(precisions)} P")
            )  # fmt: skip
            continue
        if pt.mfu is None:
            v.not_comparable.append(
                (label, "MFU unknown (no nameplate peak)", f"MFU unknown (no nameplate {prec} peak for its device)")
            )
            continue
        if pt.mfu > 1:
            v.not_comparable.append((label, "MFU above 100% (its denominator is below the real peak)",
                                     f"MFU {100 * pt.mfu:.0f}% > 100%, so its denominator ({pt.mfu_peak_tflops:g} "
                                     "TFLOPS) is below the device's real peak; it cannot bound a claim"))  # fmt: skip
            continue
        p_eq = p * pt.mfu
        row = {"workload": pt.model, "device": pt.device_name, "precision": prec, "run_precision": pt.precision,
               "batch": pt.batch_size, "tflops": pt.delivered_tflops, "mfu": pt.mfu, "p_equivalent": p_eq,
               "joules_per_pflop": pt.joules_per_pflop, "megawatts": None, "energy_estimated": False,
               "cost_per_pflop_hour": None, "of_published": None, "p_equivalent_at_published": None,
               "published": None, "peak_lower_bound": "lower bound" in (pt.mfu_peak_source or "")}  # fmt: skip
        line = (
            f"{label}: measured MFU {100 * pt.mfu:.1f}% (of {pt.mfu_peak_tflops:g} TFLOPS {prec}) -> {_n(p)} P of "
            f"such devices deliver {_n(p_eq)} P-equivalent on this workload"
        )
        if pt.joules_per_pflop is not None:
            est = " (energy ESTIMATED)" if pt.energy and pt.energy.get("estimate") else ""
            mw = p_eq * pt.joules_per_pflop / 1e6
            line += f", drawing {_n(mw)} MW at the measured {_n(pt.joules_per_pflop)} J/PFLOP{est}"
            row["megawatts"], row["energy_estimated"] = mw, bool(est)
        else:
            line += "; power on this workload not measured (no energy counter for that run)"
        if prices is not None and prices.given() and not pt.llm:
            line += _cost(pt, prices)
            row["cost_per_pflop_hour"] = _cost_value(pt, prices)
        pub = _published(pt)
        if pub is not None:
            frac = pt.throughput / pub.value
            row |= {"of_published": frac, "p_equivalent_at_published": p_eq / frac, "published": pub.short(),
                    "published_precision": pub.precision}  # fmt: skip
            cross = f" ({pub.precision_said} run counted against the {prec} peak)" if pub.precision != prec else ""
            line += (f"; the best published figure on this device and workload is {pub.describe()}: ours is "
                     f"{100 * frac:.1f}% of it, and at that figure the claim's devices would deliver "
                     f"{_n(p_eq / frac)} P-equivalent{cross}")  # fmt: skip
        v.steps.append(line + ".")
        delivered.append((p_eq, pt))
        v.rows.append(row)
    v.rows.sort(key=lambda r: -r["p_equivalent"])
    for label, _, why in v.not_comparable:
        v.steps.append(f"not comparable: {label}: {why}.")
    if "utilisation" in claim.values:
        _utilisation(v, claim, delivered)
    lead = [d for d in delivered if (d[1].mfu_precision or d[1].precision) in conventional] or delivered
    if category and delivered and not any((d[1].mfu_precision or d[1].precision) in conventional for d in delivered):
        e, q = max(delivered, key=lambda d: d[0])
        v.verdict = (f"{_n(p)} P is a nameplate sum; no measurement at {'/'.join(conventional)} (the conventional "
                     f"reading) was given, so what it delivers there is not measured; read at "
                     f"{q.mfu_precision or q.precision} instead, measured work delivers at most {_n(e)} P-equivalent "
                     f"({q.model} on {q.device_name}).")  # fmt: skip
    elif delivered:
        p_eq, pt = max(lead, key=lambda d: d[0])
        v.verdict = (
            f"{_n(p)} P is a nameplate sum; read at {pt.mfu_precision}, on measured work it delivers at most "
            f"{_n(p_eq)} P-equivalent ({pt.model}, MFU {100 * pt.mfu:.1f}% measured on {pt.device_name}; a "
            f"fleet of other devices reaches its own MFU): the P figure overstates useful compute at least "
            f"{p / p_eq:.1f}x."
        )
        if pt.mfu_peak_source and "lower bound" in pt.mfu_peak_source:
            v.verdict += " (That MFU's denominator is a lower bound of the device's peak, so it reads high.)"
        pubs = [(e, q, pub) for e, q in lead if (pub := _published(q))]
        if pubs:
            e, q, pub = max(pubs, key=lambda d: d[0])  # our best point on a workload with a published figure
            prec = q.mfu_precision or q.precision
            cross = f"; {pub.precision_said} run counted against the {prec} peak" if pub.precision != prec else ""
            v.verdict += (f" On {q.model}, our best measured point gives {_n(e)} P-equivalent; at the best published "
                          f"figure for the same device and workload ({pub.value:,.6g} {pub.metric}, {pub.software}"
                          f"{cross}) the claim's devices would deliver {_n(e * pub.value / q.throughput)} "
                          "P-equivalent: the gap between those two is software (and precision), not the "
                          "device.")  # fmt: skip
    else:
        v.verdict = (
            f"{_n(p)} P can be true only as a nameplate sum at the precisions in the arithmetic; no measurement at "
            f"{'/'.join(precisions)} was given, so what it delivers on real work is not measured."
        )
    v.headline = _capacity_headline(p, v.rows, conventional or precisions)
    if category:
        v.verdict = f"Read as {category} compute ({'/'.join(conventional)} by convention): " + v.verdict
    if not stated:
        v.verdict += " The text does not state the precision: the fleet size differs by up to " + (
            f"{max(s[2] for s in sizes) / min(s[2] for s in sizes):.0f}x between the readings above." if sizes else "?"
        )
    return v


def _capacity_headline(p: float, rows: list[dict], read_at: tuple[str, ...]) -> str:
    """ "N P claimed → at most M P-equivalent on this work (X% of nameplate); best published: Y"."""
    lead = [r for r in rows if r["precision"] in read_at] or rows
    if not lead:
        return f"{_n(p)} P claimed → what it delivers on real work is not measured (no comparable measurement)"
    best = max(lead, key=lambda r: r["p_equivalent"])
    at = "" if best["precision"] in read_at else f", read at {best['precision']}"
    high = ", against a lower-bound peak: reads high" if best["peak_lower_bound"] else ""
    line = (f"{_n(p)} P claimed → at most {_n(best['p_equivalent'])} P-equivalent on this work "
            f"({100 * best['mfu']:.1f}% of nameplate{high}, {best['workload']} on {best['device']}{at})")  # fmt: skip
    pubs = [r for r in lead if r["p_equivalent_at_published"]]
    if pubs:
        top = max(pubs, key=lambda r: r["p_equivalent_at_published"])
        line += (f"; at the best published figure: {_n(top['p_equivalent_at_published'])} P-equivalent "
                 f"({top['workload']}, {top['published']})")  # fmt: skip
        if top["p_equivalent_at_published"] > p:  # an implied MFU above 100%: another precision's run
            run = top["published_precision"] or "at an unrecorded precision"
            line += f", above the claim itself: that run is {run}, counted against the {top['precision']} peak"
    else:
        line += "; no published figure for these workloads and devices"
    return line


def _utilisation(v: Verdict, claim: Claim, delivered: list) -> None:
    """A stated utilisation rate against the measured MFU: what it says and does not say."""
    p, u, of = claim.values["p"], claim.values["utilisation"], claim.values["utilisation_of"]
    v.steps.append(f"stated utilisation {100 * u:.0f}% of {of.replace('_', ' ')}: {UTILISATION_OF[of]}.")
    best = max(delivered, key=lambda d: d[0])[1] if delivered else None
    if of == "peak_flops":
        line = f"taken as delivered compute it claims {_n(p * u)} P of useful work ({_n(p)} x {u:g})"
        if best is not None:
            line += (f"; the best measured MFU here is {100 * best.mfu:.1f}% ({best.model}): the stated rate is "
                     f"{u / best.mfu:.1f}x what was measured")  # fmt: skip
        v.steps.append(line + ".")
    else:
        line = f"a busy rate bounds delivered compute only together with MFU: at most {_n(p * u)} P-equivalent"
        if best is not None:
            line += (f", and with the best measured MFU ({100 * best.mfu:.1f}%, {best.model}) "
                     f"{_n(p * u * best.mfu)} P-equivalent at that MFU ({_n(p)} x {u:g} x {best.mfu:.3g})")  # fmt: skip
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
    singles = {(p.model, p.backend, p.precision, p.batch_size, p.device_name): p.throughput_sps for p in points
               if isinstance(p, Point) and p.rank is None and not p.aggregate}  # fmt: skip
    for p in points:
        if isinstance(p, Point) and p.aggregate and p.world_size:
            device = re.sub(r"^\d+ x ", "", p.device_name)  # an aggregate is named "2 x AMD EPYC"
            one = singles.get((p.model, p.backend, p.precision, p.batch_size, device))
            if one:
                e = p.throughput_sps / (p.world_size * one)
                return e, (f"measured: {p.model} on {p.world_size} x {p.device_name} ran {p.throughput_sps:,.4g}/s "
                           f"against {one:,.4g}/s on one, {100 * e:.0f}% scaling efficiency")  # fmt: skip
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
        v.steps.append(f"scaling efficiency: {how}.")
        expected = a * n0 / (n1 * eff) if n1 > n0 else a * n0 / n1  # the efficiency applies to an increase only
        per_device = expected / b
        v.steps.append(
            f"{_n(n0)} -> {_n(n1)} devices{' at that efficiency' if n1 > n0 else ''} would take {_n(expected)} s; the "
            f"claimed {_n(b)} s needs each device to do the work {per_device:.3g}x faster as well."
        )
        what = "The extra devices explain" if n1 > n0 else "The change in device count accounts for"
        v.verdict = (f"{what} {a / expected:.3g}x of the {speed:.3g}x; the rest ({per_device:.3g}x) needs faster "
                     "devices or software, or less work per job.")  # fmt: skip
    if "cost_change" in claim.values:
        _speedup_cost(v, claim, prices)
    return v


def _speedup_cost(v: Verdict, claim: Claim, prices) -> None:
    """What price per device-hour (and per kWh) a claimed cost change requires."""
    a, b, cc = claim.values["before_s"], claim.values["after_s"], claim.values["cost_change"]
    n0, n1 = claim.values.get("devices_before", 1), claim.values.get("devices_after", 1)
    dh0, dh1 = n0 * a / 3600, n1 * b / 3600
    said = "" if "devices_before" in claim.values else " (device counts not stated: read as equal)"
    v.steps.append(f"device-hours per job: {n0:g} x {_n(a)} s = {dh0:.4g} before, {n1:g} x {_n(b)} s = {dh1:.4g} "
                   f"after{said}.")  # fmt: skip
    ratio = (1 + cc) * dh0 / dh1  # the price per device-hour after, relative to before, that gives the cost change
    line = (f"a cost change of {100 * cc:+.0f}% holds if a device-hour after costs at most {ratio:.3g}x one "
            f"before")  # fmt: skip
    if prices is not None and prices.per_device_hour is not None:
        line += f" ({prices.per_device_hour:g} -> {prices.per_device_hour * ratio:.4g} per device-hour)"
    v.steps.append(line + "; if the devices cost the same per hour, the cost changes by "
                   f"{100 * (dh1 / dh0 - 1):+.0f}%.")  # fmt: skip
    v.steps.append(
        f"the same work at the same J/PFLOP uses the same energy: an energy cost change of {100 * cc:+.0f}% needs the "
        f"price per kWh x {1 + cc:.3g}" + (f" ({prices.per_kwh:g} -> {prices.per_kwh * (1 + cc):.4g})"
                                           if prices is not None and prices.per_kwh is not None else "")
        + ", or less energy per FLOP (measured J/PFLOP in the results shows what a device draws)."
    )  # fmt: skip
    v.verdict += (f" The {100 * cc:+.0f}% cost holds if a device-hour after costs at most {ratio:.3g}x one "
                  f"before (the job uses {dh1 / dh0:.3g}x the device-hours); if energy is the cost, at the same "
                  f"J/PFLOP it needs {1 + cc:.3g}x the price per kWh.")  # fmt: skip


def _published(pt: _Measured):
    """The best published result for a measured vision point's device and workload, or None."""
    if pt.llm or not pt.throughput or pt.devices > 1:  # published figures are per device
        return None
    from harness.machine.published import best_published

    return best_published(pt.raw_model, pt.device_name)


def _cost(pt: _Measured, prices) -> str:
    """'; a PFLOP-hour of this work costs X (prices)' for a measured point, or why not."""
    c = _cost_value(pt, prices)
    if c is None:
        return f"; its cost per PFLOP-hour is not measured at {prices.label()} (energy not measured)"
    return f"; a PFLOP-hour of this work costs {c:,.4g} at {prices.label()}"


def _cost_value(pt: _Measured, prices) -> float | None:
    """What a PFLOP-hour of this point's work costs at `prices`, or None (energy not measured)."""
    from harness.verdicts.cost import row_costs

    c = row_costs({"kind": "vision", "delivered_tflops": pt.delivered_tflops, "joules_per_pflop": pt.joules_per_pflop},
                  prices, pt.devices)  # fmt: skip
    return c["per_pflop_hour"]


def check_claim(claim: Claim, points: list[Point], computer: dict, prices=None) -> Verdict:
    if claim.kind == "capacity":
        return check_capacity(claim, points, prices)
    equivalence = claim.kind == "equivalence"
    v = check_equivalence(claim, computer) if equivalence else check_speedup(claim, points, prices)
    v.headline = v.verdict.split(". ", 1)[0].rstrip(".") if v.verdict else ""
    return v
