"""The tables the commands print: one function per table, each from measured rows to a rich Table.

Formatting only: "-" where a figure does not apply, "unknown" or "not measured" where it does
but was not obtained (never a made-up figure). Every table is a FitTable: a table where it fits,
one block of "header: value" lines per row where it does not.
"""

from __future__ import annotations

import copy
import dataclasses

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table

from harness.cli.common import out
from harness.verdicts.report import big_figure as _big


class FitTable(Table):
    """A table that breaks no word, at whatever width it is printed (a terminal, COLUMNS, a log's
    160 columns): values and headers wrap only between words, the room going first to values on
    one line, then to headers on one line (each time to the columns that need least of it). Where
    even that does not fit, the title and then one block per row, a blank line before each, a
    "header: value" line per column: longer, but nothing folded letter by letter."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        widths = self.fitted_widths(console, options)
        if widths is None:
            yield from self._blocks(console, options)
            return
        fixed = copy.copy(self)  # this table, its column widths fixed so that rich shrinks none of them
        fixed.columns = [dataclasses.replace(c, width=w) for c, w in zip(self.columns, widths, strict=True)]
        yield from Table.__rich_console__(fixed, console, options)

    def fitted_widths(self, console: Console, options: ConsoleOptions) -> list[int] | None:
        """Column widths (padding left out) that break no word within options.max_width, or None."""
        _, right, _, left = self.padding
        borders = len(self.columns) + 1 if self.box and self.show_edge else len(self.columns) - 1 if self.box else 0
        room = options.max_width - borders - (left + right) * len(self.columns)
        wide = options.update(max_width=10_000)  # measure text whole, not as it would fold
        words, values, whole = [], [], []  # each column: its longest word; values on one line; all on one line
        for c in self.columns:
            header = Measurement.get(console, wide, c.header)
            cells = [Measurement.get(console, wide, v) for v in c.cells]
            words.append(max([header.minimum, c.min_width or 0, *(m.minimum for m in cells)]))
            values.append(max([words[-1], *(m.maximum for m in cells)]))
            whole.append(max(values[-1], header.maximum))
            if c.no_wrap:  # a column that may not wrap gets its whole width or nothing
                words[-1] = values[-1] = whole[-1]
        if not self.columns or sum(words) > room:
            return None
        widths, spare = words, room - sum(words)
        for goal in (values, whole):
            for i in sorted(range(len(widths)), key=lambda i: goal[i] - widths[i]):
                grow = min(spare, goal[i] - widths[i])
                widths[i] += grow
                spare -= grow
        return widths

    def _blocks(self, console: Console, options: ConsoleOptions) -> RenderResult:
        title = console.render_str(self.title, style="table.title") if isinstance(self.title, str) else self.title
        if title:
            yield from _lines(console, title, options)
        cells = [list(c.cells) for c in self.columns]
        for row in range(self.row_count):
            block = Table.grid(padding=(0, 1, 0, 0))
            block.add_column(style="table.header", no_wrap=True)
            block.add_column(overflow="fold")  # a value too long for the line wraps under itself
            for c, values in zip(self.columns, cells, strict=True):
                block.add_row(f"{c.header}:", values[row])
            if row or title:  # a blank line between blocks
                yield Segment.line()
            yield from _lines(console, block, options)


def _lines(console: Console, renderable, options: ConsoleOptions) -> RenderResult:
    """The renderable's lines without trailing blanks (a log has none)."""
    for line in console.render_lines(renderable, options, pad=False):
        while line and not line[-1].text.strip():
            line.pop()
        if line:
            line[-1] = Segment(line[-1].text.rstrip(), line[-1].style)
        yield from line
        yield Segment.line()


def _table(title: str, columns: tuple[str, ...], left: tuple[str, ...]) -> Table:
    t = FitTable(title=title)
    for c in columns:
        t.add_column(c, justify="left" if c in left else "right")
    return t


def _stage(p, name: str) -> str:
    st = p.staged.get(name)
    return f"{st.mean_ms:.2f}" if st else "-"


def _joules(p) -> str:
    if p.joules_per_sample is None:
        return "not measured"
    return f"{p.joules_per_sample:.3g}" + (" (estimate)" if p.energy and p.energy.get("estimate") else "")


def results_table(points, width: int | None = None) -> Table:
    """Vision points: throughput, latency per stage, FLOPs, MFU, energy, flags. Below 170 columns
    (`width`, default the terminal's) the table is compact so that model names stay whole down to 120
    columns: backend and precision share a column, the device goes in the title when there is one,
    J/sample is left out when no point measured energy (the title says so), and the per-stage pre/post,
    e2e p50 and GFLOP/sample are left to the result file. Cells fold rather than being cut."""
    wide = (width or out.width) >= 170
    devices = {_device(p) for p in points}
    one_device = not wide and len(devices) == 1
    energy = wide or any(p.joules_per_sample is not None for p in points)
    title = "results (latency per batch, ms)" + (f" on {next(iter(devices))}" if one_device else "")
    title += "" if energy else "; energy not measured"
    if wide:
        cols = (
            "model",
            "backend",
            "device",
            "prec",
            "batch",
            "samples/s",
            "e2e p50",
            "e2e p99",
            "pre",
            "infer",
            "post",
            "GFLOP/sample",
            "TFLOPS",
            "MFU",
            "J/sample",
            "flags",
        )
    else:
        cols = (
            "model",
            "backend prec",
            *(() if one_device else ("device",)),
            "batch",
            "samples/s",
            "e2e p99",
            "infer",
            "TFLOPS",
            "MFU",
            *(("J/sample",) if energy else ()),
            "flags",
        )
    t = _table(title, cols, ("model", "backend", "backend prec", "device", "prec", "flags"))
    _names_whole(t, [p.model for p in points])
    for p in points:
        mfu = f"{100 * p.mfu:.1f}%" if p.mfu is not None else "unknown"
        if wide:
            t.add_row(
                p.model,
                p.backend,
                _device(p),
                p.precision,
                str(p.batch_size),
                f"{p.throughput_sps:.1f}",
                f"{p.e2e.p50_ms:.1f}",
                f"{p.e2e.p99_ms:.1f}",
                _stage(p, "pre"),
                _stage(p, "infer"),
                _stage(p, "post"),
                f"{p.flops_per_sample / 1e9:.2f}",
                f"{p.delivered_tflops:.3f}",
                mfu,
                _joules(p),
                " ".join(p.flags),
            )
            continue
        t.add_row(
            p.model,
            f"{p.backend} {p.precision}",
            *(() if one_device else (_device(p),)),
            str(p.batch_size),
            f"{p.throughput_sps:.1f}",
            f"{p.e2e.p99_ms:.1f}",
            _stage(p, "infer"),
            f"{p.delivered_tflops:.3f}",
            mfu,
            *((_joules(p),) if energy else ()),
            " ".join(p.flags),
        )
    return t


def _names_whole(t: Table, names: list[str]) -> None:
    """The first column (model names) is never cut or wrapped; other cells fold instead of being cut."""
    for c in t.columns:
        c.overflow = "fold"
    t.columns[0].no_wrap = True
    t.columns[0].min_width = max(map(len, names), default=5)


def _device(p) -> str:
    return p.device + (f" r{p.rank}" if getattr(p, "rank", None) is not None else "")


def print_footnotes(points) -> None:
    """What the MFU denominators and energy figures are (one line each kind)."""
    for src in dict.fromkeys(p.mfu_peak_source for p in points if p.mfu_peak_source):
        out.print(f"MFU denominator: {src}")
    for method in dict.fromkeys(p.energy["method"] for p in points if p.energy):
        scope = next(p.energy["scope"] for p in points if p.energy and p.energy["method"] == method)
        out.print(f"energy: {method} (scope: {scope})")


def llm_table(points) -> Table:
    """LLM points: TTFT, inter-token latency, tokens/s, prefill MFU, decode bandwidth, energy."""
    t = _table(
        "LLM generation (latencies in ms)",
        (
            "model",
            "engine",
            "prec",
            "batch",
            "prompt",
            "output",
            "TTFT p50",
            "ITL p50",
            "ITL p99",
            "TPOT",
            "prefill tok/s",
            "decode tok/s",
            "prefill MFU",
            "decode GB/s",
            "MBU",
            "J/token",
            "status",
        ),
        ("model", "engine", "prec", "status"),
    )

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    _names_whole(t, [p.model for p in points])
    for p in points:
        ok = p.status == "ok"
        t.add_row(
            p.model,
            p.engine,
            p.precision,
            str(p.batch_size),
            str(p.prompt_len),
            str(p.output_len),
            f(p.ttft.p50_ms if ok else None, ".1f"),
            f(p.itl.p50_ms if ok and p.itl else None, ".2f"),
            f(p.itl.p99_ms if ok and p.itl else None, ".2f"),
            f(p.tpot_ms, ".2f"),
            f(p.prefill_tokens_per_s, ".0f"),
            f(p.decode_tokens_per_s, ".0f"),
            f(100 * p.prefill_mfu if p.prefill_mfu else None, ".1f"),
            f(p.decode_gbs, ".1f"),
            f(100 * p.decode_mbu if p.decode_mbu else None, ".1f"),
            f(p.joules_per_token, ".3g") if ok and p.joules_per_token is not None else ("not measured" if ok else "-"),
            p.status,
        )
    return t


def kernels_table(rows, bw: float) -> Table:
    """Our kernels beside their peers: median times, speed-up against the target, bandwidth. On a GPU
    each time is device time (CUDA events on the stream) / call time (Python call to completion);
    speed-ups and bandwidth are on device time."""
    gpu = any(r.ours_device_ms is not None for r in rows)
    times = "device / call ms" if gpu else "ms"
    t = _table(
        f"kernels vs peers (median {times}; copy bandwidth measured now: {bw:.1f} GB/s read+write)",
        ("kernel", "workload", "ours", "peer", "peer time", "speed-up", "target", "GB/s", "% of copy", "1st call"),
        ("kernel", "workload", "peer"),
    )

    def ms(dev, call):
        return f"{dev:.3f} / {call:.3f}" if dev is not None else f"{call:.2f}"

    for r in rows:
        met = "" if r.target is None else (" ok" if r.speedup >= r.target else " MISSED")
        t.add_row(
            r.kernel,
            r.shape,
            ms(r.ours_device_ms, r.ours_ms),
            r.peer,
            ms(r.peer_device_ms, r.peer_ms),
            f"{r.speedup:.2f}x",
            f"{r.target:g}x{met}" if r.target else "-",
            f"{r.gbs:.1f}" if r.gbs else "-",
            f"{100 * r.copy_fraction:.0f}%" if r.copy_fraction else "-",
            f"{r.first_call_ms:.0f} ms",
        )
    return t


def peak_table(res: dict) -> Table:
    """Measured GEMM peaks per precision and copy bandwidth, each beside its nameplate."""
    t = _table(
        f"measured peaks of {res['device_name']} ({res['device']})",
        ("precision", "best n", "measured TFLOPS", "nameplate dense", "measured / nameplate", "note"),
        ("precision", "note"),
    )
    for r in res["gemm"]:
        t.add_row(
            r["precision"] + (" (TOPS)" if r["precision"] == "int8" else ""),
            str(r["best_n"] or "-"),
            f"{r['measured_tflops']:.3f}" if r["measured_tflops"] is not None else "-",
            f"{r['nameplate_tflops']:g}" if r["nameplate_tflops"] else "unknown",
            f"{100 * r['ratio']:.0f}%" if r["ratio"] else "-",
            r["note"],
        )
    plate = res["copy_nameplate_gbs"]
    ratio = f"{100 * res['copy_ratio']:.0f}%" if res["copy_ratio"] else "-"
    plate_txt = f"{plate:g}" if plate else "unknown"
    t.add_row("copy (GB/s)", "-", f"{res['copy_gbs']:.1f}", plate_txt, ratio, "read + write counted")
    return t


def backends_comparison(model: str, device, points) -> Table:
    """Every backend x precision of one preset, relative to torch eager fp32, with agreement verdicts;
    "of infer-only": end-to-end samples/s over batch / mean staged inference time (what pre- and
    post-processing leave of the engine's own throughput)."""
    base = {p.batch_size: p.throughput_sps for p in points if p.backend == "torch" and p.precision == "fp32"}
    t = _table(
        f"{model}: every backend x precision on {device} (end-to-end samples/s)",
        (
            "backend",
            "prec",
            "batch",
            "samples/s",
            "vs torch fp32",
            "infer ms",
            "of infer-only",
            "compile s",
            "agreement",
        ),
        ("backend", "prec", "agreement"),
    )
    for p in points:
        a = p.agreement or {}
        task_key = next((k for k in ("top1_agreement", "box_set_agreement", "pixel_agreement") if k in a), None)
        if a.get("passed") is None:
            verdict = "not checked (no independent reference)"
        else:
            verdict = ("pass" if a["passed"] else "FAIL") + f" (rel err {a.get('max_rel_err', float('nan')):.1e}"
            verdict += f", {task_key.split('_')[0]} {100 * a[task_key]:.0f}%)" if task_key else ")"
        ratio = p.throughput_sps / base[p.batch_size] if p.batch_size in base else None
        infer_ms = p.staged["infer"].mean_ms
        t.add_row(
            p.backend,
            p.precision,
            str(p.batch_size),
            f"{p.throughput_sps:.1f}",
            f"{ratio:.2f}x" if ratio else "-",
            f"{infer_ms:.1f}",
            f"{100 * p.throughput_sps * infer_ms / 1e3 / p.batch_size:.0f}%" if infer_ms > 0 else "-",
            f"{p.compile_s:.1f}" if p.compile_s is not None else "-",
            verdict,
        )
    return t


def gate_table(checks) -> Table:
    """The regression gate: every shared point's ratio, its 95% interval and the verdict."""
    t = _table(
        "regression gate: new / base",
        ("point", "metric", "base", "new", "new / base", "95% CI", "verdict"),
        ("point", "metric", "verdict"),
    )
    for c in checks:
        figs = (
            ("-",) * 4
            if c.ratio is None
            else (f"{c.base:.4g}", f"{c.new:.4g}", f"{c.ratio:.3f}", f"{c.low:.3f}-{c.high:.3f}")
        )
        t.add_row(c.label, c.metric, *figs, c.verdict.upper() if c.verdict == "fail" else c.verdict)
    return t


def compare_table(a, b, pairs: list[dict]) -> Table:
    """The points two result sets share, B / A."""
    t = _table(
        f"B / A: {b} vs {a}",
        ("point", "A device", "B device", "A", "B", "B / A", "A p99 ms", "B p99 ms"),
        ("point", "A device", "B device"),
    )
    for r in pairs:
        p99 = [f"{v:.1f}" if v is not None else "-" for v in (r["a_p99"], r["b_p99"])]
        t.add_row(
            r["label"],
            r["a_device"],
            r["b_device"],
            f"{r['a']:.1f} {r['unit']}",
            f"{r['b']:.1f}",
            f"{r['ratio']:.2f}x",
            *p99,
        )
    return t


def served_table(points) -> Table:
    """Served load points: the load, request and token rates, latencies, goodput, failures, energy."""
    t = _table(
        "served endpoint (client clock; latencies in ms)",
        (
            "load",
            "req/s",
            "out tok/s",
            "TTFT p50",
            "TTFT p99",
            "ITL p50",
            "TPOT mean",
            "E2E p50",
            "E2E p99",
            "goodput req/s",
            "failed",
            "J/token",
            "delivered TFLOPS",
        ),
        ("load", "failed"),
    )

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    for p in points:
        s, ok = p.served or {}, p.status == "ok"
        load = s.get("load", {})
        if load.get("shape") == "closed loop":
            shape = f"concurrency {load['concurrency']}"
        else:
            shape = f"rate {f(load.get('rate_rps'), 'g') if load.get('rate_rps') else 'inf'}/s"
        e2e = s.get("e2e") or {}
        failed = ", ".join(f"{k} {v}" for k, v in (s.get("requests", {}).get("failed") or {}).items()) or "0"
        t.add_row(
            shape,
            f(p.requests_per_s, ".2f"),
            f(p.output_tokens_per_s, ".1f"),
            f(p.ttft.p50_ms if ok else None, ".1f"),
            f(p.ttft.p99_ms if ok else None, ".1f"),
            f(p.itl.p50_ms if ok and p.itl else None, ".2f"),
            f(p.tpot_ms, ".2f"),
            f(e2e.get("p50_ms"), ".1f"),
            f(e2e.get("p99_ms"), ".1f"),
            f(s.get("goodput_rps"), ".2f"),
            failed,
            f(p.joules_per_token, ".3g") if ok and p.joules_per_token is not None else ("not measured" if ok else "-"),
            f(s.get("delivered_tflops"), ".4f"),
        )
    return t


def claim_table(v, limit: int, prices: bool) -> Table:
    """A capacity claim's comparable measured points, best first (at most `limit`)."""
    cols = (
        "workload",
        "device",
        "prec",
        "batch",
        "TFLOPS",
        "MFU",
        "P-equiv.",
        "J/PFLOP",
        *(("cost/PFLOP-h",) if prices else ()),
        "of best pub.",
        "P-eq. at pub.",
    )
    t = _table("", cols, ("workload", "device", "prec"))
    t.columns[0].min_width = max((len(r["workload"]) for r in v.rows), default=8)

    def big(x):
        return "-" if x is None else _big(x)

    for r in v.shown_rows(limit):
        t.add_row(
            r["workload"],
            r["device"],
            r["precision"],
            str(r["batch"]),
            f"{r['tflops']:.3g}" if r["tflops"] else "-",
            f"{100 * r['mfu']:.1f}%",
            big(r["p_equivalent"]),
            "not measured" if r["joules_per_pflop"] is None else big(r["joules_per_pflop"]),
            *((big(r["cost_per_pflop_hour"]),) if prices else ()),
            f"{100 * r['of_published']:.1f}%" if r["of_published"] else "-",
            big(r["p_equivalent_at_published"]),
        )
    return t
