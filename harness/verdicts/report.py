"""Procurement reports: Markdown + self-contained HTML (plots embedded), CSV, and side-by-side compare.

Everything that comes from result files reaches the HTML through Jinja2 with autoescape on, so a
model name like `<script>` is shown as text. A malformed or wrong-version result file stops the
report with its name, unless the user asks to skip it (`--skip-bad`), and skipped files are listed.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from harness import DATA_DIR, __version__
from harness.errors import UserError, strip_control
from harness.machine.published import best_published, published_energy
from harness.results.schema import LLMPoint, Point, RunResult, json_kind, read_peak, read_result
from harness.verdicts.cost import Prices, row_costs
from harness.verdicts.figures import Figures, point_figures

if TYPE_CHECKING:
    from harness.machine.published import Published

CSV_COLUMNS = (
    "file",
    "run_id",
    "status",
    "kind",
    "model",
    "task",
    "backend",
    "precision",
    "device",
    "device_name",
    "batch_size",
    "prompt_len",
    "output_len",
    "throughput",
    "throughput_unit",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "ttft_p50_ms",
    "delivered_tflops",
    "mfu",
    "mfu_peak_tflops",
    "decode_mbu",
    "joules_per_item",
    "joules_per_pflop",
    "energy_method",
    "energy_scope",
    "agreement_passed",
    "flags",
    "mode",
    "rank",
    "world_size",
    "cost_per_million_items",
    "cost_per_pflop_hour",
    "prices",
    "best_published",
    "fraction_of_published",
    "published_source",
)


@dataclass
class Inputs:
    results: list[tuple[Path, RunResult]] = field(default_factory=list)
    peaks: list[tuple[Path, dict]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def load_inputs(paths: list[Path], skip_bad: bool = False) -> Inputs:
    """Result files and `modelpower peak` files; a bad file is an error naming it, or skipped if asked."""
    inp = Inputs()
    for p in paths:
        try:
            kind = json_kind(p)
            if kind == "modelpower-peak":
                inp.peaks.append((Path(p), read_peak(p)))
            elif kind == "modelpower-kernel-bench":
                inp.skipped.append(f"{p}: a kernel benchmark, not a run result (not part of the report)")
            else:
                inp.results.append((Path(p), read_result(p)))
        except UserError as e:
            _bad(inp, p, str(e), skip_bad)
    if not inp.results:
        raise UserError("no usable result files given")
    return inp


def _bad(inp: Inputs, path, message: str, skip_bad: bool) -> None:
    if not skip_bad:
        raise UserError(f"{message} (use --skip-bad to leave it out)")
    inp.skipped.append(message)


def flat_rows(inp: Inputs, prices=None) -> list[dict]:
    """One row per measured point, the same columns for vision and LLM points; with `prices`
    (harness.verdicts.cost.Prices), what each point's work costs."""
    prices = prices or Prices()
    return [_row(path, r, p, prices) for path, r in inp.results for p in r.points]


def _row(path: Path, r: RunResult, p: Point | LLMPoint, prices: Prices) -> dict:
    """A point's row: the CSV columns (None: not measured) and, under names that start with `_`, what
    the plots, the caveats and the regression gate read."""
    f = point_figures(p)
    row = dict.fromkeys(CSV_COLUMNS)
    row.update(file=path.name, run_id=r.run_id, status=r.status, flags=" ".join(p.flags))
    row.update(_figure_columns(f))
    row.update(_llm_columns(p) if isinstance(p, LLMPoint) else _vision_columns(p))
    row.update(_published_columns(p))
    if prices.given():
        row.update(_cost_columns(row, prices, f.devices))
    return row


def _figure_columns(f: Figures) -> dict:
    """The columns every point fills alike from its figures (harness/verdicts/figures.py)."""
    energy = f.energy or {}
    return {
        "kind": f.kind,
        "model": f.model,
        "precision": f.precision,
        "device": f.device,
        "device_name": f.device_name,
        "batch_size": f.batch_size,
        "throughput": f.throughput,
        "delivered_tflops": f.delivered_tflops,
        "mfu": f.mfu,
        "mfu_peak_tflops": f.mfu_peak_tflops,
        "joules_per_item": f.joules_per_item,
        "joules_per_pflop": f.joules_per_pflop,
        "energy_method": energy.get("method", "not measured"),
        "energy_scope": energy.get("scope", "none"),
        "_peak_src": f.mfu_peak_source,
    }


def _llm_columns(p: LLMPoint) -> dict:
    """An LLM point's own columns: lengths, inter-token latency and its noise (harness/verdicts/gate.py),
    the decode figures the roofline plots; a served endpoint's API and load shape."""
    ok = p.status == "ok"
    itl = p.itl if ok else None
    cols = {
        "task": "generate",
        "backend": p.engine,
        "prompt_len": p.prompt_len,
        "output_len": p.output_len,
        "throughput_unit": "output tokens/s",
        "latency_p50_ms": itl.p50_ms if itl else None,
        "latency_p90_ms": itl.p90_ms if itl else None,
        "latency_p99_ms": itl.p99_ms if itl else None,
        "ttft_p50_ms": p.ttft.p50_ms if ok else None,
        "decode_mbu": p.decode_mbu,
        "_decode_bytes": p.decode_bytes_per_step,
        "_decode_flops": p.decode_flops_per_token,
        "_decode_tps": p.decode_tokens_per_s,
    }
    if p.served:
        cols.update(backend=f"served ({p.served['api']})", mode=_served_mode(p.served))
    if itl:
        cols.update(_cov=itl.cov, _n=itl.count, _stdev_ms=itl.stdev_ms)
    if not ok:
        cols["flags"] = (" ".join(p.flags) + " " + p.status).strip()
    return cols


def _vision_columns(p: Point) -> dict:
    """A vision point's own columns: end-to-end latency and its noise, agreement, how it was measured,
    what the roofline plots."""
    return {
        "task": p.task,
        "backend": p.backend,
        "throughput_unit": "samples/s",
        "latency_p50_ms": p.e2e.p50_ms,
        "latency_p90_ms": p.e2e.p90_ms,
        "latency_p99_ms": p.e2e.p99_ms,
        "agreement_passed": (p.agreement or {}).get("passed"),
        "rank": p.rank,
        "world_size": p.world_size,
        "mode": _mode(p),
        "_params": p.params,
        "_flops": p.flops_per_sample,
        "_input": 3 * p.input_hw[0] * p.input_hw[1],
        "_cov": p.e2e.cov,
        "_n": p.e2e.count,
        "_stdev_ms": p.e2e.stdev_ms,
    }


def _published_columns(p: Point | LLMPoint) -> dict:
    """The best published figure for the point's device and workload and ours as a fraction of it ({} if none)."""
    pub, ours, said = _llm_published(p) if isinstance(p, LLMPoint) else _vision_published(p)
    if pub is None or not ours:
        return {}
    return {
        "best_published": pub.value,
        "fraction_of_published": ours / pub.value,
        "published_source": said + pub.describe(),
    }


def _vision_published(p: Point) -> tuple[Published | None, float, str]:
    """(the best published figure, our samples/s, '') for one device's point; None for a sum over devices."""
    return (None if p.aggregate else best_published(p.model, p.device_name)), p.throughput_sps, ""


def _llm_published(p: LLMPoint) -> tuple[Published | None, float | None, str]:
    """(the best published figure, our figure to set against it, what the comparison is). A batch-1 figure
    (gpt-fast) is decode tokens/s at batch 1, same precision; an Offline one (MLPerf) is all output tokens/s
    against ours at this batch, at our precision where one was published, else the best at any precision,
    said so."""
    if p.status != "ok":
        return None, p.decode_tokens_per_s, ""
    pub = best_published(p.model, p.device_name, p.batch_size, p.precision)
    if pub is None:
        pub = best_published(p.model, p.device_name, p.batch_size, scenario="offline")
    if pub is None or pub.batch is not None:
        return pub, p.decode_tokens_per_s, ""
    other = f" {pub.precision_said}" if pub.precision != p.precision else ""
    return pub, p.output_tokens_per_s, f"ours: batch {p.batch_size} {p.precision}, published: Offline{other}; "


def _cost_columns(row: dict, prices: Prices, devices: int) -> dict:
    """What the row's work costs at `prices`; a part whose price was not given reads "no price"."""
    costs = row_costs(row, prices, devices)
    for part, price in (("energy", prices.per_kwh), ("device", prices.per_device_hour)):
        if price is None:  # shown as "no price", not as "not measured"
            costs[f"per_million_{part}"] = costs[f"per_pflop_hour_{part}"] = "no price"
    return {
        "cost_per_million_items": costs["per_million"],
        "cost_per_pflop_hour": costs["per_pflop_hour"],
        "prices": prices.label(),
        "_costs": costs,
    }


def energy_rows(rows: list[dict]) -> list[dict]:
    """LLM points with measured joules per output token beside the published J/token for the same model
    and device (MLPerf Power: whole-system wall power; ML.ENERGY: GPU energy counters), each with its scope."""
    out = []
    for r in rows:
        if r["kind"] != "llm" or r["joules_per_item"] is None:
            continue
        for pub in published_energy(r["model"], r["device_name"]):
            out.append(
                {
                    "model": r["model"],
                    "device_name": r["device_name"],
                    "precision": r["precision"],
                    "batch_size": r["batch_size"],
                    "ours": r["joules_per_item"],
                    "our_scope": r["energy_scope"],
                    "published": pub.value,
                    "published_precision": pub.precision,
                    "published_scope": pub.scope,
                    "published_source": pub.short() + f" ({pub.system})",
                }
            )
    return out


def _served_mode(served: dict) -> str:
    """How a served point was loaded: closed loop at a concurrency, or open loop at a rate."""
    load = served.get("load", {})
    if load.get("shape") == "closed loop":
        return f"served, concurrency {load.get('concurrency')}"
    rate = load.get("rate_rps")
    return f"served, {rate:g} requests/s" if rate else "served, all requests at once"


def _mode(p) -> str:
    """How a vision point was measured: end to end, or under LoadGen; one rank, or all of them."""
    mode = "end to end"
    if p.loadgen:
        mode = f"LoadGen {p.loadgen.get('scenario')}: {p.loadgen.get('result')}"
    if p.aggregate:
        mode += f", sum of {p.world_size} devices"
    elif p.rank is not None:
        mode += f", rank {p.rank} of {p.world_size}"
    return mode


def csv_cell(value):
    """A text cell a spreadsheet will not run as a formula (= + - @, tab or CR first: OWASP's rule),
    with no control characters."""
    if not isinstance(value, str):
        return value
    if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        value = "'" + value
    return strip_control(value)


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows({k: csv_cell(v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def md_safe(value):
    """What a Markdown report shows of a value: text with HTML escaped (Markdown viewers render raw
    HTML), table pipes and link/image brackets escaped (no live link or remote image from an input
    file), control characters and line breaks removed; other values as they are."""
    if not isinstance(value, str):
        return value
    text = html.escape(strip_control(value.replace("\n", " ")), quote=False)
    return text.replace("|", "\\|").replace("[", "\\[").replace("]", "\\]")


def label(r: dict) -> str:
    extra = f" p{r['prompt_len']}/o{r['output_len']}" if r["kind"] == "llm" else ""
    if r.get("mode") and r["mode"] != "end to end":
        extra += f" [{r['mode']}]"
    return strip_control(f"{r['model']} {r['backend']} {r['precision']} b{r['batch_size']}{extra}")


def caveats(inp: Inputs, rows: list[dict]) -> list[str]:
    out = [f"skipped: {s}" for s in inp.skipped]
    for path, r in inp.results:
        if r.status != "complete":
            out.append(f"{path.name}: run {r.status} ({'; '.join(r.notes) or 'no note'})")
        for f in r.failed:
            out.append(f"{path.name}: not measured: {f.get('label')}: {f.get('detail')}")
    meanings = {
        "high_cov_e2e": "end-to-end latency varied a lot (CoV > 10%)",
        "high_cov_infer": "inference latency varied a lot (CoV > 10%)",
        "throttled": "GPU clocks were throttled during the window",
        "accuracy_check_failed": "outputs disagree with the fp32 reference beyond tolerance",
        "accuracy_not_checked": "outputs not checked: no independent reference execution",
        "nan_or_inf_outputs": "NaN/Inf in outputs",
        "energy_estimated": "energy is an ESTIMATE from --assume-watts, not measured",
        "oom": "ran out of memory while it ran: no measurement",
        "skipped": "skipped, not run: estimated not to fit in the memory free (host or device): no measurement",
        "invalid_tokens": "generated token ids out of range",
        "loadgen_invalid": "MLPerf LoadGen judged the test INVALID (its summary is in the result file)",
    }
    for r in rows:
        for flag in r["flags"].split():
            out.append(f"{label(r)} on {r['device_name']}: {meanings.get(flag, flag)}")
        if r["energy_method"].startswith("not measured"):
            out.append(f"{label(r)} on {r['device_name']}: energy not measured")
        if r.get("_peak_src") and "lower bound" in r["_peak_src"]:
            out.append(
                f"{label(r)} on {r['device_name']}: MFU denominator is a lower bound (CPU clock), MFU reads high"
            )
    return list(dict.fromkeys(out))


def summary(rows: list[dict]) -> list[dict]:
    """Per device and workload: the best throughput and its figures."""
    best: dict[tuple, dict] = {}
    for r in rows:
        if r["throughput"] is None:
            continue
        key = (r["device_name"], r["model"], r["kind"], r.get("mode") or "")
        if key not in best or r["throughput"] > best[key]["throughput"]:
            best[key] = r
    return sorted(best.values(), key=lambda r: (r["device_name"], r["model"]))


def peak_rows(inp: Inputs) -> list[dict]:
    out = []
    for path, doc in inp.peaks:
        for g in doc["gemm"]:
            unit = "TOPS" if g["precision"] in ("int8", "fp8") else "TFLOPS"
            what, measured, plate = f"GEMM {g['precision']}", g["measured_tflops"], g["nameplate_tflops"]
            out.append(
                {
                    "device": doc["device_name"],
                    "what": what,
                    "measured": measured,
                    "nameplate": plate,
                    "ratio": g["ratio"],
                    "unit": unit,
                    "file": path.name,
                }
            )
        out.append(
            {
                "device": doc["device_name"],
                "what": "copy bandwidth",
                "measured": doc["copy_gbs"],
                "nameplate": doc["copy_nameplate_gbs"],
                "ratio": doc["copy_ratio"],
                "unit": "GB/s",
                "file": path.name,
            }
        )
    return out


# ------------------------------------------------------------------------------ plots
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt  # matplotlib loads in ~1 s: the plots only

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plots(rows: list[dict], inp: Inputs) -> dict[str, str]:
    """Base64 PNGs: throughput vs batch, latency percentiles, MFU/MBU, energy, roofline. Every string
    from the input files is cleaned of control characters first, so none reaches a label, a title or
    a library's warning about a glyph."""
    import matplotlib  # (as above)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib loads in ~1 s: the plots only

    # text.parse_math off: a '$' in a model name is a character, not a formula matplotlib may fail to parse
    plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "text.parse_math": False})
    rows = [{k: strip_control(v) if isinstance(v, str) else v for k, v in r.items()} for r in rows]
    return {
        "throughput": _png(_throughput_plot(plt, rows)),
        "latency": _png(_latency_plot(plt, rows)),
        "utilisation": _png(_utilisation_plot(plt, rows)),
        "energy": _png(_energy_plot(plt, rows)),
        "roofline": _png(_roofline_plot(plt, rows, inp)),
    }


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def series_styles(n: int) -> list[tuple]:
    """`n` distinct (colour, marker) pairs: the 20 colours of tab20, then the next marker, so no two
    series of a panel look alike however many there are."""
    import matplotlib  # (as above)

    pairs = matplotlib.colormaps["tab20"].colors  # dark/light pairs: the 10 dark ones first, then the light
    colours = pairs[0::2] + pairs[1::2]
    return [(colours[i % 20], MARKERS[(i // 20) % len(MARKERS)]) for i in range(n)]


def _throughput_plot(plt, rows: list[dict]):
    """One panel per model (series: device, backend, precision, mode), so that a report of many
    results stays readable; each series in a panel has its own colour and marker."""
    panels: dict[str, dict[tuple, list]] = {}
    for r in rows:
        if r["throughput"] is not None:
            extra = (r["prompt_len"], r["output_len"]) if r["kind"] == "llm" else ()
            if r.get("mode") and r["mode"] != "end to end":
                extra = (*extra, f"[{r['mode']}]")  # LoadGen or per-rank points are their own series
            key = (r["device_name"], r["backend"], r["precision"], *extra)
            panels.setdefault(r["model"], {}).setdefault(key, []).append(r)
    names = list(panels)[:12] or ["(no points)"]
    cols = min(3, len(names))
    nrows = -(-len(names) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    for ax, model in zip(axes.flat, names, strict=False):
        series = panels.get(model, {})
        for (key, rs), (colour, marker) in zip(series.items(), series_styles(len(series)), strict=True):
            rs.sort(key=lambda r: r["batch_size"])
            ax.plot(
                [r["batch_size"] for r in rs],
                [r["throughput"] for r in rs],
                marker=marker,
                color=colour,
                label=" ".join(str(k) for k in key[1:]) + f" ({key[0]})",
            )
        batches = sorted({r["batch_size"] for rs in series.values() for r in rs}) or [1]
        ax.set(xscale="log", yscale="log", xlabel="batch size", title=model)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        if series:
            ax.legend(fontsize=5, loc="best")
    axes.flat[0].set_ylabel("samples/s or output tokens/s")
    fig.suptitle("Throughput vs batch size, one panel per model" + (" (first 12 models)" if len(panels) > 12 else ""))
    fig.tight_layout()
    return fig


def _latency_plot(plt, rows: list[dict]):
    shown = [r for r in rows if r["latency_p50_ms"] is not None][:16]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    xs = range(len(shown))
    for i, (k, name) in enumerate((("latency_p50_ms", "p50"), ("latency_p90_ms", "p90"), ("latency_p99_ms", "p99"))):
        ax.bar([x + (i - 1) * 0.27 for x in xs], [r[k] for r in shown], width=0.27, label=name)
    ax.set_xticks(list(xs), [label(r) for r in shown], rotation=60, ha="right", fontsize=6)
    ax.set(yscale="log", ylabel="ms", title="Latency percentiles (vision: per batch end to end; LLM: inter-token)")
    ax.legend()
    return fig


def _utilisation_plot(plt, rows: list[dict]):
    fig, ax = plt.subplots(figsize=(7, 3.6))
    known = [r for r in rows if r["mfu"] is not None or r["decode_mbu"] is not None][:20]
    xs = range(len(known))
    ax.bar([x - 0.2 for x in xs], [100 * (r["mfu"] or 0) for r in known], width=0.4, label="MFU (LLM: prefill)")
    ax.bar([x + 0.2 for x in xs], [100 * (r["decode_mbu"] or 0) for r in known], width=0.4, label="MBU (LLM decode)")
    ax.set_xticks(list(xs), [label(r) for r in known], rotation=60, ha="right", fontsize=6)
    ax.set(ylabel="% of dense nameplate", title="Utilisation (points with a known denominator)")
    ax.legend()
    return fig


def _energy_plot(plt, rows: list[dict]):
    fig, ax = plt.subplots(figsize=(7, 3.0))
    measured = [r for r in rows if r["joules_per_item"] is not None][:20]
    if measured:
        ax.bar(range(len(measured)), [r["joules_per_item"] for r in measured])
        ax.set_xticks(range(len(measured)), [label(r) for r in measured], rotation=60, ha="right", fontsize=6)
        ax.set(ylabel="J per sample / token", title="Energy per item")
    else:
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            "Energy not measured in these results\n(no GPU energy counter or RAPL on the machines)",
            ha="center",
            va="center",
            fontsize=11,
        )
    return fig


def _roofline_plot(plt, rows: list[dict], inp: Inputs):
    fig, ax = plt.subplots(figsize=(7, 4))
    pts = []
    for r in rows:
        if r["kind"] == "vision" and r.get("_params") and r["delivered_tflops"]:
            nbytes = 4 * r["_params"] / r["batch_size"] + 4 * r["_input"]  # weights shared by the batch + input
            pts.append((r["_flops"] / nbytes, r["delivered_tflops"], r))
        elif r["kind"] == "llm" and r.get("_decode_bytes") and r.get("_decode_tps"):
            pts.append(
                (
                    r["_decode_flops"] * r["batch_size"] / r["_decode_bytes"],
                    r["_decode_flops"] * r["_decode_tps"] / 1e12,
                    r,
                )
            )
    for (x, y, r), (colour, marker) in zip(pts, series_styles(len(pts)), strict=True):
        ax.scatter(x, y, s=18, color=colour, marker=marker, label=label(r))
    for _, doc in inp.peaks:
        bw = doc["copy_gbs"] / 1e3  # TB/s
        for g in doc["gemm"]:
            if g["measured_tflops"] and g["precision"] in ("fp32", "bf16", "fp16"):
                xs_ = [0.1, 10000]
                ax.plot(
                    xs_,
                    [min(g["measured_tflops"], bw * x) for x in xs_],
                    lw=1,
                    ls="--",
                    label=strip_control(f"measured ceiling {g['precision']} ({doc['device_name']})"),
                )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="arithmetic intensity (FLOPs / byte; vision: weights + input bytes)",
        ylabel="delivered TFLOPS",
        title="Roofline against the measured peaks",
    )
    ax.legend(fontsize=5, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _key(r: dict) -> tuple:
    """What makes two rows the same point: model, backend, precision, batch, lengths, how measured."""
    return (r["model"], r["backend"], r["precision"], r["batch_size"], r["prompt_len"], r["output_len"], r["mode"])


def pair_rows(a: list[dict], b: list[dict]) -> tuple[list[tuple[dict, dict]], list[str], list[str]]:
    """(rows of A and B that are the same point, labels only in A, labels only in B); the rows get
    their label as `_label`."""
    for r in (*a, *b):
        r["_label"] = label(r)
    amap, bmap = {_key(r): r for r in a}, {_key(r): r for r in b}
    pairs = [(r, bmap[k]) for k, r in amap.items() if k in bmap]
    only = lambda x, y: [r["_label"] for k, r in x.items() if k not in y]  # noqa: E731
    return pairs, only(amap, bmap), only(bmap, amap)


def compare_rows(a: list[dict], b: list[dict]) -> list[dict]:
    """Points present in both sets (same model, backend, precision, batch, prompt, output), with B / A."""
    out = []
    for r, o in pair_rows(a, b)[0]:
        if r["throughput"] and o["throughput"]:
            out.append(
                {
                    "label": label(r),
                    "a_device": r["device_name"],
                    "b_device": o["device_name"],
                    "a": r["throughput"],
                    "b": o["throughput"],
                    "unit": r["throughput_unit"],
                    "ratio": o["throughput"] / r["throughput"],
                    "a_p99": r["latency_p99_ms"],
                    "b_p99": o["latency_p99_ms"],
                }
            )
    return out


PLOT_CAPTIONS = (
    ("throughput", "Throughput vs batch size, one panel per model; a series per device, backend and precision"),
    ("latency", "Latency percentiles (p50, p90, p99)"),
    ("utilisation", "MFU and MBU against the dense nameplate (points with a known denominator)"),
    ("energy", "Energy per sample or token"),
    ("roofline", "Arithmetic intensity vs delivered TFLOPS against the measured peaks"),
)


def _fmt(v, f: str) -> str:
    if isinstance(v, str):  # a reason in place of a figure ("no price")
        return v
    return "not measured" if v is None else f % v


CLAIM_ROWS = 8  # measured points shown per claim; the rest are counted (the appendix lists every one)


def big_figure(v: float) -> str:
    """A large figure for a table: thousands separated, three significant digits below 100."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}"


def _big(v) -> str:
    return "not measured" if v is None else big_figure(v)


def _pct(v) -> str:
    return "unknown" if v is None else f"{100 * v:.1f}%"


def render(inp: Inputs, rows: list[dict], verdicts: list, title: str, prices=None) -> tuple[str, str]:
    """(markdown, html). Autoescape is on for the HTML: nothing from a result file becomes markup."""
    from harness.machine.provenance import now_iso  # provenance imports torch: the command line loads this module

    folder = DATA_DIR
    ctx = dict(
        title=title,
        version=__version__,
        generated=now_iso(),
        results=inp.results,
        peaks=inp.peaks,
        rows=rows,
        summary=summary(rows),
        peak_rows=peak_rows(inp),
        plots=plots(rows, inp),
        plot_captions=PLOT_CAPTIONS,
        verdicts=verdicts,
        caveats=caveats(inp, rows),
        fmt=_fmt,
        pct=_pct,
        label=label,
        big=_big,
        claim_rows=CLAIM_ROWS,
        energy=energy_rows(rows),
        prices=prices.label() if prices is not None and prices.given() else None,
    )
    html_env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=True,
        finalize=lambda v: strip_control(v) if isinstance(v, str) else v,
    )
    md_env = jinja2.Environment(loader=jinja2.FileSystemLoader(folder), autoescape=False, finalize=md_safe)
    return md_env.get_template("report.md.j2").render(ctx), html_env.get_template("report.html.j2").render(ctx)
