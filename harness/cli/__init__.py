"""The `modelpower` command line: the app and its commands, one module per group.

- inspect.py: devices, models, backends       - run.py: run, quick        - run_llm.py: run-llm
- measure.py: peak, kernels                    - verdicts.py: claim, report, compare
Every user mistake is one line on stderr and exit code 2 (`common.user_errors`).
"""

from __future__ import annotations

import os
import signal
from typing import Annotated

import typer

from harness.cli import inspect, measure, run, run_llm, verdicts
from harness.cli.common import out

app = typer.Typer(
    name="modelpower",
    help="Benchmark batch inference on this machine: throughput, latency, delivered FLOPS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from harness.provenance import package_version

        out.print(f"modelpower {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Benchmark batch inference on this machine: throughput, latency, delivered FLOPS."""


for command in (inspect.devices, inspect.models, run.run, run.quick, measure.kernels, measure.peak, verdicts.claim,
                inspect.backends):  # fmt: skip
    app.command()(command)
app.command("run-llm")(run_llm.run_llm)
app.command()(verdicts.report)
app.command()(verdicts.compare)


def main() -> None:
    """Console-script entry point: SIGTERM and SIGHUP end a run as Ctrl-C does; once the command
    has finished, a further Ctrl-C no longer interrupts the interpreter's shutdown."""
    from harness.session import handle_stop_signals

    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning")
    handle_stop_signals()
    try:
        app()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
