"""The `modelpower` command line: the app and its commands, one module per group.

- inspect.py: devices, models, backends       - run.py: run, quick        - run_llm.py: run-llm, make-gguf
- measure.py: peak, kernels                    - verdicts.py: claim, report, compare
- serve.py: serve-bench
Every user mistake is one line on stderr and exit code 2 (`common.user_errors`).

Commands import the benchmark they run inside the command function, the one place in the code where
imports do not sit at module top: `modelpower --help` took 0.8 s that way and 15-19 s with every
benchmark module loaded (torch, numba.cuda, onnx; measured on the 2-core machine under load,
2026-12-08). `tests/test_cli.py` checks that the command line loads without torch.

May import: anything in harness; nothing else imports it.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Annotated

import typer

try:  # typer >= 0.2x carries its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # older typer uses click itself
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from harness.cli import inspect, measure, run, run_llm, serve, verdicts
from harness.cli.common import err, out
from harness.errors import strip_control


class OneLineErrors(TyperGroup):
    """Command-line parsing mistakes (an unknown option, `--warmup abc`) as one line and exit 2,
    like every other user mistake, instead of a usage box."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as e:  # `modelpower` alone: the help, as before
            e.show()
            sys.exit(e.exit_code)
        except ClickException as e:
            hint = f" (see `{e.ctx.command_path} --help`)" if getattr(e, "ctx", None) else ""
            err.print(f"modelpower: error: {' '.join(e.format_message().split())}{hint}", soft_wrap=True)
            sys.exit(2 if isinstance(e, UsageError) else e.exit_code)
        except typer.Abort:
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="modelpower",
    cls=OneLineErrors,
    help="Benchmark batch inference on this machine: throughput, latency, delivered FLOPS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from harness.machine.provenance import package_version

        out.print(f"modelpower {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Benchmark batch inference on this machine: throughput, latency, delivered FLOPS."""


for command in (
    inspect.devices,
    inspect.models,
    run.run,
    run.quick,
    measure.kernels,
    measure.peak,
    verdicts.claim,
    inspect.backends,
):
    app.command()(command)
app.command("run-llm")(run_llm.run_llm)
app.command("make-gguf")(run_llm.make_gguf)
app.command("serve-bench")(serve.serve_bench)
app.command()(verdicts.report)
app.command()(verdicts.compare)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings through our console: one line, control characters removed (a model name
    with an escape byte must not reach the terminal through matplotlib's "Glyph missing" warning)."""
    err.print(f"modelpower: warning: {strip_control(' '.join(str(message).split()))[:300]}", soft_wrap=True)


def _memory_limit_hint() -> str:
    try:
        import resource  # inside the try: POSIX only

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        return "" if soft == resource.RLIM_INFINITY else f" (this process may use {soft / 2**30:.1f} GiB: ulimit -v)"
    except (ImportError, OSError, ValueError):
        return ""


def _out_of_memory_loading(e: BaseException) -> bool:
    """A library (torch's shared objects, say) that could not be loaded for want of memory."""
    return isinstance(e, ImportError) and "failed to map segment" in str(e).lower()


def main() -> None:
    """Console-script entry point: SIGTERM and SIGHUP end a run as Ctrl-C does; once the command
    has finished, a further Ctrl-C no longer interrupts the interpreter's shutdown. A library that
    cannot be loaded for want of memory (a low `ulimit -v`) is one line, exit 2."""
    try:
        # inside the try: a library that fails to load for want of memory is one line
        from harness.results.session import handle_stop_signals, ignore_stop_signals
    except (ImportError, OSError, MemoryError) as e:
        if not _out_of_memory_loading(e):
            raise
        err.print(f"modelpower: error: not enough memory to load torch{_memory_limit_hint()}: {e}", soft_wrap=True)
        sys.exit(2)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning")
    warnings.showwarning = _show_warning
    handle_stop_signals()
    try:
        app()
    except (ImportError, OSError, MemoryError) as e:
        if not _out_of_memory_loading(e):
            raise
        err.print(f"modelpower: error: not enough memory to load a library{_memory_limit_hint()}: {e}", soft_wrap=True)
        sys.exit(2)
    finally:  # the command is over: a late signal must not raise into the interpreter's shutdown
        ignore_stop_signals()
