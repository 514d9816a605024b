"""The CLI's tables in logs and pipes (harness/cli/tables.py FitTable): at 80, 120 and 200 columns no
header is broken inside a word and every value is printed whole, as a table where one fits, else as
one block of "header: value" lines per row; COLUMNS sets the width, a terminal or not."""

import copy
import io
from types import SimpleNamespace

import pytest
from rich.console import Console
from typer.testing import CliRunner

from harness.cli import app
from harness.cli.common import LOG_WIDTH, SafeConsole
from harness.results.schema import write_result
from harness.verdicts.claims import Claim, check_capacity
from tests.helpers import make_llm_point, make_point, make_result

WIDTHS = [80, 120, 200]


def _llm():
    from harness.cli.tables import llm_table

    return llm_table(
        [
            make_llm_point(engine="modelpower", tpot_ms=3.21, decode_gbs=4.9, prefill_tokens_per_s=2013.0),
            make_llm_point(batch_size=32, joules_per_token=None, energy=None, decode_mbu=0.123),
            make_llm_point(batch_size=64, status="out_of_memory"),
        ]
    )


def _served():
    from harness.cli.tables import served_table

    served = {
        "load": {"shape": "closed loop", "concurrency": 8},
        "e2e": {"p50_ms": 812.5, "p99_ms": 1502.25},
        "requests": {"failed": {"timeout": 2}},
        "goodput_rps": 6.5,
        "delivered_tflops": 0.0123,
    }
    return served_table([make_llm_point(served=served, tpot_ms=12.5, joules_per_token=None, energy=None)])


def _vision(width):
    from harness.cli.tables import results_table

    flags = ["high_cov_e2e", "accuracy_check_failed"]
    pts = [make_point(model="grid-insulator-efficientnet", flags=flags), make_point(model="pcb-defect-yolo", mfu=0.42)]
    return results_table(pts, width)


def _backends():
    from harness.cli.tables import backends_comparison

    ok = {"passed": True, "max_rel_err": 1.2e-3, "top1_agreement": 1.0}
    pts = [
        make_point(compile_s=None),
        make_point(backend="onnxruntime", precision="fp16", throughput_sps=30.0, compile_s=4.2, agreement=ok),
        make_point(backend="openvino", precision="int8", agreement={"passed": None}),
    ]
    return backends_comparison("steel-defect-mobilenetv3", "cpu", pts)


def _kernels():
    from harness.cli.tables import kernels_table
    from harness.kernelbench.bench import Row

    row = Row(
        "softmax_topk (cuda)", "64 x 152064, k=5", 900.0, 0.25, "torch softmax+topk (cuda)", 0.4, 3.2, 2.0, 2000.0, 0.7
    )
    return kernels_table([row, Row("rmsnorm (cpu)", "8 x 4096", 3.0, 0.5, "torch", 0.7, 1.4, None, None, None)], 2900.0)


def _peak():
    from harness.cli.tables import peak_table

    gemm = [
        {"precision": "fp32", "best_n": 4096, "measured_tflops": 1.234, "nameplate_tflops": 2.0, "ratio": 0.62},
        {"precision": "int8", "best_n": None, "measured_tflops": None, "nameplate_tflops": None, "ratio": None},
    ]
    for g in gemm:
        g["note"] = "no int8 GEMM on this device" if g["precision"] == "int8" else ""
    res = {"device_name": "AMD EPYC 9654", "device": "cpu", "gemm": gemm}
    return peak_table(res | {"copy_gbs": 120.5, "copy_nameplate_gbs": None, "copy_ratio": None})


def _gate():
    from harness.cli.tables import gate_table

    check = {"metric": "samples/s", "base": 100.0, "new": 80.0, "ratio": 0.8, "low": 0.777, "high": 0.823}
    return gate_table(
        [
            SimpleNamespace(label="steel-defect-mobilenetv3 torch fp32 b1", verdict="fail", **check),
            SimpleNamespace(label="pcb-defect-yolo torch fp32 b8", verdict="missing", **(check | {"ratio": None})),
        ]
    )


def _compare():
    from harness.cli.tables import compare_table

    pair = {"label": "steel-defect-mobilenetv3 torch fp32 b1", "a_device": "cpu", "b_device": "NVIDIA H100 80GB HBM3"}
    pair |= {"a": 120.0, "b": 2400.0, "ratio": 20.0, "unit": "samples/s", "a_p99": 12.5, "b_p99": None}
    return compare_table("a.json", "b.json", [pair])


def _claim():
    from harness.cli.tables import claim_table

    pt = make_point(precision="fp16", mfu=0.3, mfu_precision="fp16", mfu_peak_tflops=989.4)
    v = check_capacity(Claim("c", "capacity", "", "", {"p": 11000, "precision": "fp16"}), [pt])
    return claim_table(v, 8, prices=True)


TABLES = {
    "llm": lambda w: _llm(),
    "served": lambda w: _served(),
    "vision": _vision,
    "backends": lambda w: _backends(),
    "kernels": lambda w: _kernels(),
    "peak": lambda w: _peak(),
    "gate": lambda w: _gate(),
    "compare": lambda w: _compare(),
    "claim": lambda w: _claim(),
}


def render(table, width: int) -> str:
    """The table as a log or a pipe gets it: no terminal, no colour."""
    console = Console(width=width, file=io.StringIO())
    assert not console.is_terminal
    console.print(table)
    return console.file.getvalue()


def read_back(table, width: int) -> tuple[str, list[str], list[list[str]]]:
    """The layout, and the headers and rows as printed, each cell's lines joined with spaces: a
    word broken across lines does not read back whole. A table is read from a copy drawn with a
    line between rows (the same column widths), to tell a row's wrapped lines from the next row."""
    text = render(table, width)
    headers = [str(c.header) for c in table.columns]
    if "┏" in text:
        lined = copy.copy(table)
        lined.show_lines = True
        cells: list[list[list[str]]] = [[]]  # rows of lines of cells; the header is the first row
        for ln in render(lined, width).splitlines():
            if ln[:1] in "┃│":
                cells[-1].append([c.strip() for c in ln[1:-1].split(ln[0])])
            elif ln[:1] in "┡├":
                cells.append([])
        rows = [[" ".join(x[j] for x in lines if x[j]) for j in range(len(headers))] for lines in cells]
        return "table", rows[0], rows[1:]
    rows, keys = [], []
    blocks = text.split("\n\n")
    if table.title:
        assert " ".join(blocks.pop(0).split("\n")) == table.title, text
    for block in blocks:
        lines = []
        for ln in block.strip("\n").split("\n"):  # a value too long for its line goes on under itself
            if ln.startswith(" "):
                lines[-1] += " " + ln.strip()
            else:
                lines.append(ln)
        keys = [ln[: len(h)] if ln[len(h) : len(h) + 1] == ":" else ln for ln, h in zip(lines, headers, strict=True)]
        rows.append([ln[len(h) + 1 :].strip() for ln, h in zip(lines, headers, strict=True)])
    return "blocks", keys, rows


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(TABLES))
def test_every_table_keeps_headers_and_values_whole(name, width):
    table = TABLES[name](width)
    headers = [str(c.header) for c in table.columns]
    values = [list(r) for r in zip(*(c.cells for c in table.columns), strict=True)]
    text = render(table, width)
    assert max(len(ln) for ln in text.splitlines()) <= width and "…" not in text, text
    layout, printed_headers, rows = read_back(table, width)
    assert printed_headers == headers, text  # wrapped, if at all, between words
    assert rows == values, text  # every value whole
    if layout == "blocks":
        assert all(ln == ln.rstrip() for ln in text.splitlines()), text  # no trailing blanks in a log
    if width == 200:
        assert layout == "table", text  # every table fits at 200 columns as a table


def test_llm_table_is_blocks_where_it_cannot_fit_and_a_table_where_it_can():
    narrow, wide = render(_llm(), 80), render(_llm(), 200)
    assert "prefill MFU:" in narrow and "J/token:" in narrow and "┏" not in narrow
    assert narrow.startswith("LLM generation (latencies in ms)\n\nmodel:")
    assert narrow.count("\n\nmodel:") == 3  # a block per point, a blank line between
    assert "prefill tok/s" in wide and "not measured" in wide and "out_of_memory" in wide


@pytest.mark.parametrize("columns", ["100", "90"])
def test_columns_is_the_width_of_a_log(monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    console = SafeConsole(file=io.StringIO())
    assert console.width == int(columns)
    console.print(_llm())
    text = console.file.getvalue()
    assert max(len(ln) for ln in text.splitlines()) <= int(columns) and "J/token:" in text
    assert SafeConsole(file=io.StringIO(), width=70).width == 70  # a width given wins


def test_a_log_without_columns_is_log_width(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert SafeConsole(file=io.StringIO()).width == LOG_WIDTH


def test_columns_reaches_the_commands(tmp_path):
    """`compare` under CliRunner (not a terminal): COLUMNS bounds its table."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_result(make_result([make_point(model="steel-defect-mobilenetv3")]), a)
    write_result(make_result([make_point(model="steel-defect-mobilenetv3", throughput_sps=24.0)]), b)
    runner = CliRunner()
    for columns, widest in (("100", 100), ("60", 60)):
        r = runner.invoke(app, ["compare", str(a), str(b)], env={"COLUMNS": columns})
        assert r.exit_code == 0, r.output
        assert max(len(ln) for ln in r.stdout.splitlines()) <= widest, r.stdout
        assert "2.00x" in r.stdout
