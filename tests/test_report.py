"""Reports: built from result files, escaped, CSV, compare, bad files, and rendered in real Chromium."""

import csv
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.results.schema import write_result
from tests.helpers import make_point, make_result

runner = CliRunner()
EVIL = "<script>alert('x')</script>"


@pytest.fixture
def results(tmp_path):
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    pts = [make_point(model=EVIL, mfu=0.5, mfu_peak_tflops=1.0), make_point(batch_size=8), make_point()]
    write_result(make_result(pts), a)
    write_result(make_result([make_point(throughput_sps=24.0, device_name="other box")]), b)
    return a, b


def test_report_escapes_everything_from_result_files(results, tmp_path):
    r = runner.invoke(app, ["report", str(results[0]), str(results[1]), "-o", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "rep" / "report.html").read_text()
    assert EVIL not in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "<script" not in html.lower()
    assert html.count("data:image/png;base64,") == 5  # plots embedded: no network needed
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Summary per device" in md and "Appendix: provenance" in md
    rows = list(csv.DictReader((tmp_path / "rep" / "metrics.csv").open()))
    assert len(rows) == 4 and rows[0]["model"] == EVIL and float(rows[0]["mfu"]) == 0.5
    assert "energy not measured" in html


def test_bad_files_are_named_or_skipped_on_request(results, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 99}')
    r = runner.invoke(app, ["report", str(results[0]), str(bad), "-o", str(tmp_path / "rep")])
    assert r.exit_code == 2 and str(bad) in r.stderr and "--skip-bad" in r.stderr
    r = runner.invoke(app, ["report", str(results[0]), str(bad), "-o", str(tmp_path / "rep"), "--skip-bad"])
    assert r.exit_code == 0, r.output
    assert "schema version 99" in (tmp_path / "rep" / "report.html").read_text()  # listed among the caveats


def test_compare_gives_ratios(results):
    r = runner.invoke(app, ["compare", str(results[0]), str(results[1])])
    assert r.exit_code == 0, r.output
    assert "2.00x" in r.stdout  # 24 / 12 samples/s, the point both sets share
    r = runner.invoke(app, ["compare", str(results[0]), str(results[0].parent / "nothing.json")])
    assert r.exit_code == 2


@pytest.mark.slow  # starts a browser, twice
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_in_chromium_with_its_plots(results, tmp_path):
    runner.invoke(app, ["report", str(results[0]), "-o", str(tmp_path / "rep")])
    page = (tmp_path / "rep" / "report.html").as_uri()
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    dom = subprocess.run(["chromium", *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<img") == 5 and "Summary per device" in dom.stdout
    assert "&lt;script&gt;" in dom.stdout  # the injected name is text in the rendered document
    console = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln]
    assert not console, console
    shot = tmp_path / "shot.png"
    subprocess.run(
        ["chromium", *flags, "--window-size=1280,2000", f"--screenshot={shot}", page], capture_output=True, timeout=120
    )
    assert shot.exists() and shot.stat().st_size > 20_000


def test_many_series_stay_readable():
    """Every series of a panel has its own colour and marker (tab20 repeats only with a new marker),
    and the throughput plot has one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.verdicts.report import _throughput_plot, series_styles

    styles = series_styles(45)
    assert len(set(styles)) == 45
    rows = [
        {
            "throughput": 10.0 + i,
            "kind": "vision",
            "prompt_len": None,
            "output_len": None,
            "mode": "end to end",
            "device_name": f"dev{i % 3}",
            "model": f"model{i % 4}",
            "backend": f"b{i}",
            "precision": "fp32",
            "batch_size": 1 + i % 2,
        }
        for i in range(40)
    ]
    fig = _throughput_plot(plt, rows)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert sorted(ax.get_title() for ax in titled) == ["model0", "model1", "model2", "model3"]
    for ax in titled:
        looks = [(tuple(line.get_color()), line.get_marker()) for line in ax.get_lines()]
        assert len(looks) == len(set(looks)) == 10
    plt.close(fig)


H100 = sorted(str(p) for p in __import__("pathlib").Path("results/reference/h100-sxm").glob("2026*.json"))


def _claim_sections(md: str) -> dict[str, list[str]]:
    body = md.split("## Claim verdicts", 1)[1].split("\n## ", 1)[0]
    sections = {}
    for part in body.split("\n### ")[1:]:
        lines = part.rstrip("\n").split("\n")
        sections[lines[0].split(" ", 1)[0]] = lines
    return sections


def test_each_claim_section_reads_in_25_lines_with_its_arithmetic_in_the_appendix(tmp_path):
    """The public claims over the H100 reference results: the answer first, one table, the rest counted."""
    r = runner.invoke(app, ["report", *H100, "-o", str(tmp_path / "rep"), "--claims", "claims/public-claims.toml"])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep" / "report.md").read_text()
    sections = _claim_sections(md)
    assert set(sections) == {"cq-general", "cq-capacity", "cq-supercomputing", "xj-to-cq", "west-dispatch"}
    for claim_id, lines in sections.items():
        assert len(lines) <= 25, (claim_id, len(lines))
    cap = "\n".join(sections["cq-capacity"])
    assert "**11,000 P claimed → at most 2,205 P-equivalent on this work (20.0% of nameplate" in cap
    assert "| driving-seg-deeplabv3 | NVIDIA H100 80GB HBM3 | fp16 | 8 |" in cap  # the best row first
    assert "more points" in cap and "Not comparable: 9 measured at bf16, tf32" in cap
    glance = md.split("## The claims in one line each", 1)[1].split("\n## ", 1)[0]
    assert glance.count("\n- **") == 5
    appendix = md.split("## Appendix: claim arithmetic", 1)[1]
    assert "11,000 P = 11,000,000 TFLOPS" in appendix and "not comparable: llama2-7b prefill" in appendix


@pytest.mark.slow  # starts a browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_html_first_screen_shows_every_claims_answer(tmp_path):
    """At 1366x768 in Chromium every claim's one-line answer lies within the first screen: a copy of the
    report measures each line's box (the report itself has no script)."""
    r = runner.invoke(app, ["report", *H100, "-o", str(tmp_path / "rep"), "--claims", "claims/public-claims.toml"])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "<script" not in html.lower()
    probe = (
        "<script>window.addEventListener('load', () => { const b = [...document.querySelectorAll('.headline')]"
        ".map(e => Math.round(e.getBoundingClientRect().bottom)); document.body.setAttribute('data-fit', "
        "JSON.stringify({bottoms: b, width: document.documentElement.scrollWidth})); });</script>"
    )
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", probe + "</body>"))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1366,768",
        "--hide-scrollbars",
    ]
    dom = subprocess.run(["chromium", *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    import html as html_lib
    import json
    import re

    fit = json.loads(html_lib.unescape(re.search(r'data-fit="([^"]*)"', dom.stdout).group(1)))
    assert len(fit["bottoms"]) == 5 and max(fit["bottoms"]) <= 768, fit
    assert fit["width"] <= 1366, fit
    shot = tmp_path / "first-screen.png"
    subprocess.run(
        ["chromium", *flags, f"--screenshot={shot}", (tmp_path / "rep" / "report.html").as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 10_000


@pytest.mark.parametrize("width", [120, 160, 200])
def test_terminal_results_table_shows_model_names_whole(width):
    """`quick`'s presets at 120 columns and wider: every model name whole, the flags folded, not cut."""
    from rich.console import Console

    from harness.cli.tables import results_table

    names = ["steel-defect-mobilenetv3", "pcb-defect-yolo", "grid-insulator-efficientnet"]
    pts = [make_point(model=n, flags=["high_cov_e2e", "accuracy_check_failed"]) for n in names]
    console = Console(width=width, record=True)
    console.print(results_table(pts, width))
    text = console.export_text()
    assert all(n in text for n in names), text
    assert "accuracy_check_failed" in text.replace("│", "").replace(" ", "").replace("\n", "")  # folded, whole
    assert ("GFLOP/sample" in text) == (width >= 170) and "…" not in text  # nothing cut
    assert max(len(line) for line in text.splitlines()) <= width


def test_markdown_report_has_no_live_links_from_input_files(tmp_path):
    pts = [make_point(model="[click](javascript:alert(1)) ![img](http://evil.example/x.png)")]
    write_result(make_result(pts), tmp_path / "r.json")
    r = runner.invoke(app, ["report", str(tmp_path / "r.json"), "-o", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep" / "report.md").read_text()
    import re

    assert not re.search(r"(?<!\\)\]\(", md) and "\\[click\\]" in md  # every link bracket escaped


def test_claims_and_report_read_a_point_through_one_adapter():
    """harness/verdicts/figures.py: the figures a claim table and a report row show are the same."""
    from harness.verdicts.claims import Claim, check_capacity
    from harness.verdicts.figures import point_figures
    from harness.verdicts.report import Inputs, flat_rows
    from tests.helpers import make_llm_point

    served = {"api": "openai", "mfu": 0.05, "delivered_tflops": 50.0, "load": {"shape": "closed loop"}}
    vision = make_point(mfu=0.4, mfu_precision="fp32", mfu_peak_tflops=1.0, aggregate=True, world_size=2)
    pts = [vision, make_llm_point(joules_per_token=0.5, compute_precision="bf16"), make_llm_point(served=served)]
    figs = [point_figures(p) for p in pts]
    assert [f.workload for f in figs] == ["m", "llm-tiny prefill", "llm-tiny served"]
    assert [(f.mfu, f.delivered_tflops, f.devices) for f in figs] == [(0.4, 0.012, 2), (0.1, 100.0, 1), (0.05, 50.0, 1)]
    assert [f.throughput for f in figs] == [12.0, 900.0, 900.0] and figs[1].joules_per_item == 0.5
    rows = flat_rows(Inputs(results=[(Path("r.json"), make_result(pts))]))
    assert [(r["mfu"], r["delivered_tflops"], r["joules_per_item"]) for r in rows] == [
        (f.mfu, f.delivered_tflops, f.joules_per_item) for f in figs
    ]
    v = check_capacity(Claim("c", "capacity", "", "", {"p": 100, "precision": ["fp32", "bf16"]}), pts)
    assert sorted((r["workload"], r["mfu"], r["tflops"]) for r in v.rows) == sorted(
        (f.workload, f.mfu, f.delivered_tflops) for f in figs
    )
