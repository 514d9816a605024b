"""Commands that turn result files into verdicts: `claim`, `report`, `compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from harness.cli.common import SpecOpt, clean, out, say, user_errors
from harness.errors import UserError
from harness.inputs import check_number, check_writable
from harness.machine.specs import use_spec_file
from harness.results.schema import json_kind, read_result, write_atomic
from harness.verdicts import gate
from harness.verdicts.claims import check_claim, computer_from, load_claim_files
from harness.verdicts.cost import Prices

PriceKwhOpt = Annotated[
    float | None, typer.Option(help="Price of electricity per kWh: cost of the measured work (any currency).")
]
PriceHourOpt = Annotated[
    float | None, typer.Option(help="Price of one device for an hour (rent or amortised): cost of the measured work.")
]


@user_errors
def claim(
    files: Annotated[
        list[Path],
        typer.Argument(help="Claim .toml files and measurement .json files (results, a `peak` file), in any order."),
    ],
    results: Annotated[
        list[Path] | None, typer.Option("--results", "-r", help="A result JSON file to use (repeatable).")
    ] = None,
    peak_file: Annotated[
        Path | None, typer.Option("--peak", help="A `modelpower peak` file: the measured computer for equivalences.")
    ] = None,
    spec: SpecOpt = None,
    electricity_price: PriceKwhOpt = None,
    device_hour_price: PriceHourOpt = None,
    rows: Annotated[int, typer.Option("--rows", min=1, help="Measured points shown per claim, best first.")] = 8,
    steps: Annotated[bool, typer.Option("--steps", help="Print the arithmetic step by step under each verdict.")] = (
        False
    ),
) -> None:
    """Check compute claims: per claim a verdict and a table of the measured points (--steps: the arithmetic)."""
    from harness.cli.tables import claim_table
    from harness.machine.devices import detect_cpu

    use_spec_file(spec)
    prices = Prices(electricity_price, device_hour_price)
    claim_files = [f for f in files if f.suffix == ".toml"]
    result_files = list(results or [])
    for f in files:
        if f.suffix == ".toml":
            continue
        if f.suffix != ".json":
            raise UserError(f"{f}: expected a claim .toml or a measurement .json file")
        kind = json_kind(f)
        if kind == "modelpower-peak":
            if peak_file is not None:
                raise UserError(f"two peak files ({peak_file}, {f}): name the one measured computer")
            peak_file = f
        elif kind is None:
            result_files.append(f)
    if not claim_files:
        raise UserError("no claim file given (.toml; see claims/README.md)")
    claims = load_claim_files(claim_files)
    points = [p for r in result_files for p in read_result(r).points]
    computer = computer_from(peak_file, detect_cpu())
    for c in claims:
        v = check_claim(c, points, computer, prices)
        out.rule(Text.assemble((clean(c.id), "bold"), f" ({c.kind})"))
        if c.text:
            out.print(Text(f"claim: {clean(c.text)}"))
        out.print(Text.assemble((clean(v.headline) + ".", "bold"), " ", clean(v.rest())))
        if v.rows:
            out.print(claim_table(v, rows, prices.given()))
        more = len(v.rows) - len(v.shown_rows(rows))
        tail = (
            f"{more} more points (--rows N shows more, --steps every one). " if more > 0 else ""
        ) + v.not_comparable_summary()
        if tail:
            out.print(Text(tail.strip(), style="dim"))
        if steps:
            for i, step in enumerate(v.steps, 1):
                out.print(Text(f"  {i}. {clean(step)}"))
    if not points:
        out.print("(no --results given: delivered compute is not measured in these verdicts)")


@user_errors
def report(
    files: Annotated[
        list[Path], typer.Argument(help="Result JSON files (any devices, models, backends) and peak files.")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for report.md, report.html, metrics.csv.")
    ] = Path("report"),
    claims: Annotated[list[Path] | None, typer.Option(help="Claim TOML file(s) whose verdicts to include.")] = None,
    skip_bad: Annotated[bool, typer.Option(help="Leave out (and list) malformed or wrong-version files.")] = False,
    title: Annotated[str, typer.Option(help="The report's title.")] = "Inference benchmark report",
    electricity_price: PriceKwhOpt = None,
    device_hour_price: PriceHourOpt = None,
) -> None:
    """Write a procurement report: Markdown, self-contained HTML with plots, and a CSV of every point."""
    from harness.verdicts import report as rp

    prices = Prices(electricity_price, device_hour_price)
    inp = rp.load_inputs(files, skip_bad)
    check_writable(out_dir)
    rows = rp.flat_rows(inp, prices)
    verdicts = []
    if claims:
        from harness.machine.devices import detect_cpu

        points = [p for _, r in inp.results for p in r.points]
        computer = computer_from(inp.peaks[0][0] if inp.peaks else None, detect_cpu())
        loaded = []
        for f in claims:
            try:
                loaded += load_claim_files([f])
            except UserError as e:
                if not skip_bad:
                    raise
                inp.skipped.append(str(e))  # --skip-bad leaves out (and lists) a bad claim file too
        verdicts = [check_claim(c, points, computer, prices) for c in loaded]
    md, html = rp.render(inp, rows, verdicts, title, prices)
    for name, text in (("report.md", md), ("report.html", html), ("metrics.csv", rp.csv_text(rows))):
        write_atomic(out_dir / name, text)
    for s in inp.skipped:
        say(f"skipped: {s}")
    out.print(
        f"wrote {out_dir / 'report.html'}, {out_dir / 'report.md'} and {out_dir / 'metrics.csv'} ({len(rows)} points)"
    )


@user_errors
def compare(
    a: Annotated[Path, typer.Argument(help="Result set A (the base): a result file, or a folder of them.")],
    b: Annotated[Path, typer.Argument(help="Result set B (the new one), compared with A (B / A).")],
    skip_bad: Annotated[bool, typer.Option(help="Leave out (and list) malformed files.")] = False,
    fail_on_regression: Annotated[
        float | None,
        typer.Option(help="Gate: exit 1 if a point's throughput fell by more than PCT percent, beyond its noise."),
    ] = None,
    fail_on_latency: Annotated[
        float | None, typer.Option(help="Gate: exit 1 if a point's p99 latency rose by more than PCT percent.")
    ] = None,
    run_to_run: Annotated[
        float, typer.Option(help="Gate: the spread between runs of the same code on your runners, in percent.")
    ] = 0.0,
    require_all: Annotated[bool, typer.Option(help="Gate: a point found in one set only is a failure.")] = False,
    junit: Annotated[Path | None, typer.Option(help="Gate: write a JUnit XML file (one test case per point).")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Gate: write a Markdown summary (a CI job summary).")] = None,
) -> None:
    """Side by side: the points two result sets share, with throughput ratios (device X vs Y, before vs after);
    with --fail-on-regression, a noise-aware regression gate for CI."""
    from harness.cli.tables import compare_table
    from harness.verdicts import report as rp

    gating = fail_on_regression is not None or fail_on_latency is not None
    for flag, pct in (("--fail-on-regression", fail_on_regression), ("--fail-on-latency", fail_on_latency)):
        if pct is not None:
            check_number(flag, pct, 0, 100, above=True)
    check_number("--run-to-run", run_to_run, 0, 100)
    if not gating and (require_all or junit or markdown or run_to_run):
        raise UserError(
            "--require-all, --run-to-run, --junit and --markdown belong to the gate: add --fail-on-regression PCT"
        )
    for f in (junit, markdown):
        if f is not None:
            check_writable(f.parent, "the gate's report")

    skipped: list[str] = []

    def rows_of(p: Path):
        files = sorted(p.glob("*.json")) if p.is_dir() else [p]
        inp = rp.load_inputs(files, skip_bad)
        skipped.extend(inp.skipped)
        return rp.flat_rows(inp)

    rows_a, rows_b = rows_of(a), rows_of(b)
    for s in dict.fromkeys(skipped):  # a file in both sets is listed once
        say(f"skipped: {s}")
    pairs = rp.compare_rows(rows_a, rows_b)
    if not pairs:
        raise UserError("the two result sets share no point (same model, backend, precision, batch, lengths)")
    if not gating:
        out.print(compare_table(a, b, pairs))
        return
    raise typer.Exit(
        _gate(rows_a, rows_b, fail_on_regression, fail_on_latency, run_to_run / 100, require_all, junit, markdown)
    )


def _gate(rows_a, rows_b, pct, latency_pct, run_to_run, require_all, junit, markdown) -> int:
    """Run the gate, print and write its verdicts; the exit code (1 if any point failed)."""
    from harness.cli.tables import gate_table
    from harness.verdicts.report import pair_rows

    pairs, only_a, only_b = pair_rows(rows_a, rows_b)
    checks = gate.gate(pairs, "throughput", pct / 100, run_to_run) if pct is not None else []
    if latency_pct is not None:
        checks += gate.gate(pairs, "p99 latency", latency_pct / 100, run_to_run)
    checks += gate.missing_checks(only_a, "the base", require_all)
    checks += gate.missing_checks(only_b, "the new set", require_all)
    out.print(gate_table(checks))
    if junit:
        write_atomic(junit, gate.junit_xml(checks))
    if markdown:
        frac = [None if v is None else v / 100 for v in (pct, latency_pct)]
        write_atomic(markdown, gate.markdown(checks, *frac))
    fails = [c for c in checks if c.verdict == "fail"]
    unsure = sum(c.verdict == "inconclusive" for c in checks)
    out.print(
        f"gate: {len(fails)} failed, {unsure} inconclusive (within noise: not a failure), "
        f"{sum(c.verdict == 'pass' for c in checks)} passed"
    )
    return 1 if fails else 0
