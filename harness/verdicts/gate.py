"""A noise-aware performance regression gate (`modelpower compare BASE NEW --fail-on-regression PCT`).

For every point the two result sets share, the NEW / BASE ratio of throughput (and, asked for,
of p99 latency) gets a 95% confidence interval from the noise each result already records: the
per-batch end-to-end latency series of a vision point (its count and coefficient of variation),
the inter-token latency series of an LLM point.

- Throughput: the relative standard error of a window's throughput is taken as CoV / sqrt(n) of
  its per-batch times (n batches in the window); the log ratio's error combines both sides, and
  its interval uses Student's t with Welch-Satterthwaite degrees of freedom.
- p99 latency: for a roughly normal series the standard error of the 99th percentile is
  sqrt(0.99 x 0.01) / phi(2.326) = 3.73 times stdev / sqrt(n) (the asymptotic variance of a
  sample quantile); the same t interval on the log ratio.

A window's own noise says nothing of how far two runs on the same machine drift apart (other
tenants, clocks, caches): on this project's shared 2-core VM two back-to-back `quick --profile ci`
runs of the same code differed by up to 16% in throughput. `run_to_run` (a fraction, from
`--run-to-run PCT`) adds that spread to each side's error, in quadrature; measure it on your
runners by comparing two runs of the same code.

Verdict of a point, for throughput (latency mirrored: higher is worse):
- pass: NEW is not slower (ratio >= 1), or slower beyond noise with the whole interval above 1 - PCT;
- fail: slower beyond noise AND beyond PCT (the whole interval below 1 - PCT);
- inconclusive: slower, but the interval reaches 1 (within noise) or straddles 1 - PCT: not a
  failure, and said so. A lone run on a noisy runner cannot tell a 3% dip from noise.

A point that ran out of memory in NEW (status "oom") where BASE measured it fails. A point skipped
in either set (status "skipped": estimated not to fit, never run) has nothing to compare: it is
"missing" from that set, as a point absent from it is (a failure only under --require-all).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.etree import ElementTree

P99_SE_FACTOR = math.sqrt(0.99 * 0.01) / (math.exp(-(2.3263478740408408**2) / 2) / math.sqrt(2 * math.pi))


def t_quantile_975(df: float) -> float:
    """Student's t 97.5% quantile. Degrees of freedom are rounded down (the wider, safer interval);
    exact for 1 and 2, a four-term Cornish-Fisher expansion around the normal from 3 on (0.12% low
    at 3, within 0.05% from 5)."""
    z = 1.959963984540054
    if not math.isfinite(df) or df > 1e6:
        return z
    n = max(1, math.floor(df))
    if n == 1:
        return math.tan(math.pi * 0.475)
    if n == 2:
        return 0.95 / math.sqrt(2 * 0.975 * 0.025)
    return (
        z
        + (z**3 + z) / (4 * n)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * n**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * n**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * n**4)
    )


@dataclass
class Side:
    """What one result says of a point: the figure, and the noise of the series behind it."""

    value: float  # throughput, or p99 latency in ms
    rel_se: float  # relative standard error of `value`
    n: int  # samples in the series


def interval(a: Side, b: Side) -> tuple[float, float, float]:
    """(ratio b / a, 95% low, 95% high) on the log scale with Welch-Satterthwaite degrees of freedom."""
    va, vb = a.rel_se**2, b.rel_se**2
    se = math.sqrt(va + vb)
    denom = (va**2 / max(a.n - 1, 1)) + (vb**2 / max(b.n - 1, 1))
    df = (va + vb) ** 2 / denom if denom > 0 else math.inf
    ratio = b.value / a.value
    half = t_quantile_975(df) * se
    return ratio, ratio * math.exp(-half), ratio * math.exp(half)


def verdict(ratio: float, low: float, high: float, pct: float, higher_is_better: bool) -> str:
    """pass, fail or inconclusive (see the module docstring); `pct` a fraction (0.05 for 5%)."""
    if not higher_is_better:  # mirror latency onto the throughput rule
        ratio, low, high = 1 / ratio, 1 / high, 1 / low
    if ratio >= 1:
        return "pass"
    if high >= 1:
        return "inconclusive"  # slower, but within noise
    if high < 1 - pct:
        return "fail"
    return "pass" if low >= 1 - pct else "inconclusive"  # beyond noise; fail only wholly below 1 - pct


def throughput_side(row: dict) -> Side | None:
    """A flat report row's throughput and its noise; None if the row holds no usable series."""
    cov, n = row.get("_cov"), row.get("_n")
    if not row.get("throughput") or cov is None or not n:
        return None
    return Side(row["throughput"], cov / math.sqrt(n), n)


def latency_side(row: dict) -> Side | None:
    """A flat report row's p99 latency and its noise (see P99_SE_FACTOR)."""
    p99, sd, n = row.get("latency_p99_ms"), row.get("_stdev_ms"), row.get("_n")
    if not p99 or sd is None or not n:
        return None
    return Side(p99, P99_SE_FACTOR * sd / math.sqrt(n) / p99, n)


@dataclass
class Check:
    """One point's gate: its label, what was compared, the figures and the verdict."""

    label: str
    metric: str  # "throughput" or "p99 latency"
    base: float | None
    new: float | None
    ratio: float | None
    low: float | None
    high: float | None
    verdict: str  # pass, fail, inconclusive, missing (in one set only, or skipped in one: not run)
    note: str = ""


def gate(
    pairs: list[tuple[dict, dict]], metric: str, pct: float, run_to_run: float = 0.0, required: bool = False
) -> list[Check]:
    """The verdict of every shared point for `metric` ("throughput" or "p99 latency"); `run_to_run`
    the relative spread between runs of the same code, added to each side's noise; `required`
    (--require-all): a point skipped in either set fails, as a missing one does."""
    side = throughput_side if metric == "throughput" else latency_side
    out = []
    for a, b in pairs:
        sa, sb = side(a), side(b)
        for s in (sa, sb) if run_to_run else ():
            if s is not None:
                s.rel_se = math.hypot(s.rel_se, run_to_run)
        label = a["_label"]
        if sa is not None and sb is None and "oom" in _flags(b):
            out.append(Check(label, metric, sa.value, None, None, None, None, "fail", "out of memory in the new set"))
            continue
        skipped = [where for where, row in (("the base", a), ("the new set", b)) if "skipped" in _flags(row)]
        if skipped:  # not run there: no figure to hold against the other set's
            why = f"not run in {' and '.join(skipped)} (skipped: estimated not to fit)"
            out.append(Check(label, metric, None, None, None, None, None, "fail" if required else "missing", why))
            continue
        if sa is None or sb is None:
            out.append(Check(label, metric, None, None, None, None, None, "inconclusive", "no noise data"))
            continue
        ratio, low, high = interval(sa, sb)
        v = verdict(ratio, low, high, pct, higher_is_better=metric == "throughput")
        out.append(Check(label, metric, sa.value, sb.value, ratio, low, high, v))
    return out


def _flags(row: dict) -> list[str]:
    return (row.get("flags") or "").split()


def missing_checks(labels: list[str], where: str, required: bool) -> list[Check]:
    """Points found in one set only: a failure under --require-all, otherwise listed as skipped."""
    verdict_ = "fail" if required else "missing"
    return [Check(lb, "presence", None, None, None, None, None, verdict_, f"only in {where}") for lb in labels]


def junit_xml(checks: list[Check], name: str = "modelpower regression gate") -> str:
    """JUnit XML: one test case per point and metric; failed -> <failure>, inconclusive or missing
    -> <skipped>, with the figures in the message."""
    suite = ElementTree.Element(
        "testsuite",
        name=name,
        tests=str(len(checks)),
        failures=str(sum(c.verdict == "fail" for c in checks)),
        skipped=str(sum(c.verdict in ("inconclusive", "missing") for c in checks)),
    )
    for c in checks:
        case = ElementTree.SubElement(
            suite, "testcase", classname=f"modelpower.{c.metric.replace(' ', '_')}", name=c.label
        )
        text = describe(c)
        if c.verdict == "fail":
            ElementTree.SubElement(case, "failure", message=text).text = text
        elif c.verdict in ("inconclusive", "missing"):
            ElementTree.SubElement(case, "skipped", message=text)
        ElementTree.SubElement(case, "system-out").text = text
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def describe(c: Check) -> str:
    """One line: the figures and the verdict."""
    if c.ratio is None:
        return f"{c.label} ({c.metric}): {c.verdict}" + (f", {c.note}" if c.note else "")
    return (
        f"{c.label} ({c.metric}): base {c.base:.4g}, new {c.new:.4g}, new/base {c.ratio:.3f} "
        f"(95% CI {c.low:.3f}-{c.high:.3f}): {c.verdict}"
    )


def markdown(checks: list[Check], pct: float | None, latency_pct: float | None) -> str:
    """A summary table for a CI job summary; `pct`, `latency_pct`: the thresholds as fractions."""
    fails = sum(c.verdict == "fail" for c in checks)
    limits = [f"{name} {v:.0%}" for name, v in (("throughput", pct), ("p99 latency", latency_pct)) if v is not None]
    head = f"**modelpower regression gate: {'FAILED' if fails else 'passed'}** ({fails} failed; {', '.join(limits)})"
    lines = [head, "", "| point | metric | base | new | new / base | 95% CI | verdict |", "|" + "---|" * 7]
    for c in checks:
        figs = (
            ("-",) * 4
            if c.ratio is None
            else (f"{c.base:.4g}", f"{c.new:.4g}", f"{c.ratio:.3f}", f"{c.low:.3f} - {c.high:.3f}")
        )
        label = c.label.replace("|", "\\|").replace("<", "&lt;")
        note = f" ({c.note})" if c.note else ""
        lines.append(f"| {label} | {c.metric} | {' | '.join(figs)} | {c.verdict}{note} |")
    return "\n".join(lines) + "\n"
