"""One run's result file from first write to last, and the checks every request passes first.

- `ResultSession` is the lifecycle that `run`, `run-llm` and rank 0 under torchrun share: it names
  the file (DATE-TIME-RUNID.json), records the exact command and provenance, adds each point as it
  finishes (the file is rewritten atomically after every point), and ends "complete", or
  "incomplete" when interrupted (Ctrl-C: the finished points are kept) or stopped by an error.
- A sink says where points go: `LocalSink` writes the file; under torchrun the worker's
  `DistContext` (harness/vision/distributed.py) gathers every rank's point on rank 0, which writes.
- `Events` is how a run reports as it goes; the CLI draws it, the session and runners never print.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from harness.errors import UserError, first_line
from harness.results.schema import (
    SCHEMA_VERSION,
    LLMPoint,
    Point,
    RunResult,
    mark_incomplete_in_place,
    new_run_id,
    read_result,
    write_result,
)

if TYPE_CHECKING:
    import torch

RESULTS_DIR = Path("results")  # where result files go unless --out names another folder

Tick = Callable[..., None]  # tick(phase, elapsed_s=0.0, n=0): a window under way (n = 0: the phase only)


@contextmanager
def _no_track(label: str, phases: int, unit: str) -> Iterator[Tick]:
    yield lambda phase, elapsed=0.0, n=0: None


@dataclass
class Events:
    """What a run tells its caller: `note` a line of news (device picked, model loading, a point
    that failed under keep-going); `track(label, phases, unit)` brackets one point's measurement
    and gives a tick for its windows."""

    note: Callable[[str], None] = field(default=lambda text: None)
    track: Callable[[str, int, str], AbstractContextManager[Tick]] = field(default=_no_track)


# -- signals: SIGTERM and SIGHUP end a run as Ctrl-C does


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a scheduler's stop, a closed terminal): handled as Ctrl-C is."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame) -> None:
    raise Interrupted(signum)


def handle_stop_signals() -> None:
    """From now on SIGTERM and SIGHUP raise `Interrupted` in the main thread, and Ctrl-C
    KeyboardInterrupt (even where the parent process left SIGINT ignored)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def exit_code(e: KeyboardInterrupt) -> int:
    """The conventional exit code of a process stopped by a signal: 128 + its number (Ctrl-C: 130)."""
    return 128 + getattr(e, "signum", signal.SIGINT)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def ignore_stop_signals() -> None:
    """Ignore Ctrl-C, SIGTERM and SIGHUP from now on (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)


@contextmanager
def shielded() -> Iterator[None]:
    """Ignore Ctrl-C, SIGTERM and SIGHUP while the last result is written (only the main thread
    can change signal handlers; elsewhere this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = [signal.signal(s, signal.SIG_IGN) for s in STOP_SIGNALS]
    try:
        yield
    finally:
        for s, h in zip(STOP_SIGNALS, old, strict=True):
            signal.signal(s, h)


# -- the result lifecycle


def new_result_path(out_dir: Path) -> Path:
    """DATE-TIME-RUNID.json in `out_dir`: sortable by time, unique by run id."""
    return out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{new_run_id()}.json"


class Sink(Protocol):
    """Where a session's points go, and the process's place in the run."""

    path: Path  # the result file
    rank: int | None  # None: a single process
    writes: bool  # this process writes the file (and prints the tables)

    def device(self, choice: str) -> tuple[torch.device, str]: ...
    def barrier(self) -> None: ...  # called right before every point's timed windows
    def start(self, result: RunResult) -> None: ...
    def add(self, result: RunResult, point: Point | LLMPoint) -> None: ...
    def finish(self, result: RunResult) -> None: ...


class LocalSink:
    """A single process: the result file is this process's, rewritten after every point."""

    rank = None
    writes = True

    def __init__(self, out_dir: Path):
        self.path = new_result_path(out_dir)

    def device(self, choice: str) -> tuple[torch.device, str]:
        from harness.machine.devices import (
            resolve_device,  # devices and provenance import torch: the command line loads this module for --help
        )

        return resolve_device(choice)

    def barrier(self) -> None:
        pass

    def start(self, result: RunResult) -> None:
        write_result(result, self.path)

    def add(self, result: RunResult, point: Point | LLMPoint) -> None:
        result.points.append(point)
        write_result(result, self.path)

    def finish(self, result: RunResult) -> None:
        try:
            write_result(result, self.path)
        except (OSError, UserError):  # a full disk (write_atomic says so in a UserError): the file keeps
            mark_incomplete_in_place(self.path)  # its last points and says it is incomplete
            raise


class ResultSession:
    """`with ResultSession(config, sink) as session:` ... `session.add(point)` for each point.

    The block's end sets the status: complete; incomplete with a note when Ctrl-C interrupted it
    (the KeyboardInterrupt is absorbed: `interrupted` says so, the caller exits 130) or when an
    error stopped it (the error goes on up). The file is written at the start, after every point
    and at the end."""

    def __init__(self, config: dict, sink: Sink):
        from harness.machine.provenance import command_line, now_iso, provenance  # (as above)

        self.sink = sink
        self.interrupted: KeyboardInterrupt | None = None  # Ctrl-C, or Interrupted (SIGTERM, SIGHUP)
        self.result = RunResult(
            schema_version=SCHEMA_VERSION,
            run_id=sink.path.stem.rsplit("-", 1)[-1],
            status="running",
            started_at=now_iso(),
            ended_at=None,
            command=command_line(),
            config=config,
            provenance=provenance(),
        )

    @property
    def path(self) -> Path:
        return self.sink.path

    def __enter__(self) -> ResultSession:
        self.sink.start(self.result)
        return self

    def add(self, point: Point | LLMPoint) -> None:
        self.sink.add(self.result, point)

    def note(self, text: str) -> None:
        self.result.notes.append(text)

    def fail(self, record: dict) -> None:
        """A point that could not be measured (out of memory, or an error under keep-going)."""
        self.result.failed.append(record)

    def __exit__(self, kind, exc, tb) -> bool:
        with shielded():  # a second Ctrl-C must not cut the last write short
            absorbed = self._finish(kind, exc)
        if absorbed:
            ignore_stop_signals()  # stopping: a burst of further signals must not cut the report short
        return absorbed

    def _finish(self, kind, exc) -> bool:
        from harness.machine.provenance import now_iso  # (as above)

        r = self.result
        r.ended_at = now_iso()
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            self.interrupted = exc if exc is not None else KeyboardInterrupt()
        if kind is None:
            r.status = "complete"
        elif self.interrupted:
            by = f"by {exc}" if isinstance(exc, Interrupted) else "by the user"
            r.status = "incomplete"
            r.notes.append(f"interrupted {by} after {len(r.points)} point(s)")
        else:
            r.status = "incomplete"
            r.notes.append(f"stopped by an error: {first_line(exc) if exc else kind.__name__}")
        self.sink.finish(r)
        return self.interrupted is not None


def mark_incomplete(path: Path, note: str, once: bool = False) -> RunResult | None:
    """An existing result file marked incomplete with `note` (`once`: not if it already is one);
    None if there is no file."""
    if not path.exists():
        return None
    result = read_result(path)
    if not (once and result.status == "incomplete"):
        result.status = "incomplete"
        result.notes.append(note)
        write_result(result, path)
    return result
