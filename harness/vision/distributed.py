"""Many devices through PyTorch's own launcher (`modelpower run ... --nproc-per-node N`).

The launcher (`launch`) hands the same `modelpower run` command to torch.distributed.run
(torchrun), which starts one worker per device on each node. Each worker (`DistContext`) measures
on its own device (cuda:LOCAL_RANK, or the CPU with its share of the cores); a gloo barrier lines
the ranks up before every point's timed windows; after each point, rank 0 gathers every rank's
point as JSON, adds the aggregate row (throughput, samples, FLOPS and energy summed over the ranks;
latency of the slowest rank) and rewrites the one result file. If a worker dies, torchrun stops
the others and the launcher marks the result incomplete, naming the rank, and exits non-zero:
the points gathered until then are kept.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path

import numba
import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import get_args_parser, run

from harness.errors import UserError
from harness.machine.devices import device_name, use_cuda_device
from harness.measure.metrics import energy_per_work, pflops_per_kw
from harness.results.schema import Point, RunResult, mark_incomplete_in_place, point_from_dict, write_result
from harness.results.session import mark_incomplete

ENV_WORKER = "MODELPOWER_WORKER"  # "1" in the workers the launcher starts
ENV_RESULT = "MODELPOWER_RESULT"  # the result path the launcher chose for rank 0
ENV_FAIL_RANK = "MODELPOWER_TEST_FAIL_RANK"  # tests only: this rank exits after its first point
LAUNCH_OPTIONS = ("--nproc-per-node", "--nnodes", "--node-rank", "--rdzv-endpoint")
TIMEOUT = timedelta(hours=2)  # a barrier waits at most this long for the slowest rank's point


def in_worker() -> bool:
    return os.environ.get(ENV_WORKER) == "1" and "RANK" in os.environ


def strip_launch_options(argv: list[str]) -> list[str]:
    """argv without the launcher's own options (`--opt V` and `--opt=V` forms)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in LAUNCH_OPTIONS:
            skip = True
            continue
        if a.split("=", 1)[0] in LAUNCH_OPTIONS:
            continue
        out.append(a)
    return out


@dataclass(frozen=True)
class Launch:
    """`modelpower run --nproc-per-node N`: one worker per device through torchrun; the node options
    left None were not given (one node, rank 0)."""

    nproc_per_node: int | None = None  # None: no torchrun, this process measures
    nnodes: int | None = None
    node_rank: int | None = None
    rdzv_endpoint: str | None = None

    def check(self) -> None:
        if self.nproc_per_node is None and (self.nnodes, self.node_rank, self.rdzv_endpoint) != (None, None, None):
            raise UserError("--nnodes, --node-rank and --rdzv-endpoint apply to torchrun runs: add --nproc-per-node")

    def run(self, device: str, argv: list[str], result_path: Path) -> int:
        """Check the launcher's options, then run `modelpower run` on every device; the exit code."""
        nnodes, rank = self.nnodes or 1, self.node_rank or 0
        check_launch(self.nproc_per_node, nnodes, rank, self.rdzv_endpoint, device)
        return launch(self.nproc_per_node, nnodes, rank, self.rdzv_endpoint, argv, result_path)


def check_launch(nproc: int, nnodes: int, node_rank: int, rdzv: str | None, device: str) -> None:
    """The launcher's own options, and a device choice a worker can honour, checked before any worker starts."""
    if nproc < 1 or nnodes < 1:
        raise UserError("--nproc-per-node and --nnodes must be >= 1")
    if not 0 <= node_rank < nnodes:
        raise UserError(f"--node-rank must be in 0..{nnodes - 1}, got {node_rank}")
    if nnodes > 1 and not rdzv:
        raise UserError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (the same on every node)")
    if rdzv and (":" not in rdzv or not rdzv.rsplit(":", 1)[1].isdigit()):
        raise UserError(f"--rdzv-endpoint must be HOST:PORT, got {rdzv!r}")
    choice = device.strip().lower()
    if choice not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device {choice} with --nproc-per-node: use auto, cpu or cuda (one GPU per worker)")
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but no CUDA GPU is visible on this machine")
    if choice == "cuda" and nproc > torch.cuda.device_count():
        raise UserError(f"--nproc-per-node {nproc} but only {torch.cuda.device_count()} GPU(s) are visible")


def torchrun_args(nproc: int, nnodes: int, node_rank: int, rdzv: str | None, run_argv: list[str]) -> list[str]:
    """torchrun's command line for this run: standalone on one node, c10d rendezvous across nodes."""
    check_launch(nproc, nnodes, node_rank, rdzv, "auto")
    args = [f"--nproc-per-node={nproc}"]
    if rdzv:
        args += [f"--nnodes={nnodes}", f"--node-rank={node_rank}", "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv}"]
    else:
        args += ["--standalone"]
    return [*args, "-m", "harness", *run_argv]


def launch(nproc: int, nnodes: int, node_rank: int, rdzv: str | None, argv: list[str], result_path: Path) -> int:
    """Run `modelpower run` on every device through torchrun; returns the exit code."""
    args = get_args_parser().parse_args(torchrun_args(nproc, nnodes, node_rank, rdzv, strip_launch_options(argv)))
    os.environ[ENV_WORKER] = "1"
    os.environ[ENV_RESULT] = str(result_path)
    try:
        run(args)
    except ChildFailedError as e:
        rank, first = e.get_first_failure()
        how = f"signal {first.signal_name()}" if first.exitcode < 0 else f"exit code {first.exitcode}"
        ranks = f"rank {rank} ({how}; torchrun then stopped the other workers)"
        # rank 0 wrote what was gathered: keep it, marked incomplete
        kept = mark_incomplete(result_path, f"worker failure: {ranks}; the points gathered before it are kept")
        where = f"partial results kept in {result_path}" if kept else "no result was written"
        print(f"modelpower: error: worker {ranks} failed; {where}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, SignalException):  # Ctrl-C: torchrun passed it on to the workers
        result = mark_incomplete(result_path, "interrupted by the user", once=True)
        if result is not None:
            print(f"interrupted: keeping the {len(result.points)} finished point(s) in {result_path}", file=sys.stderr)
        else:
            print("interrupted before any point finished: no result written", file=sys.stderr)
        return 130
    finally:
        os.environ.pop(ENV_WORKER, None)
    return 0


def _worker_env() -> dict[str, int]:
    """RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE and the result path, as torchrun and the launcher
    set them, checked together: a worker environment that is partial or inconsistent (MODELPOWER_WORKER=1
    left in a shell, say) is one line naming what is missing, not a KeyError."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
    missing = [n for n in (*names, ENV_RESULT) if not os.environ.get(n)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise UserError(
            f"{ENV_WORKER}=1 is set but {', '.join(missing)} {verb} not: unset {ENV_WORKER} (only "
            "`modelpower run --nproc-per-node` sets it, through torchrun)"
        )
    try:
        v = {n.lower(): int(os.environ[n]) for n in names}
    except ValueError:
        raise UserError(f"{ENV_WORKER}=1 is set but torchrun's variables are not whole numbers") from None
    if not (0 <= v["rank"] < v["world_size"] and 0 <= v["local_rank"] < v["local_world_size"] <= v["world_size"]):
        raise UserError(f"{ENV_WORKER}=1 is set with an inconsistent torchrun environment: {v}")
    return v


@dataclass
class DistContext:
    """This worker's place in the run (from torchrun's environment), and the session's sink
    (harness/results/session.py): points are gathered on rank 0, which writes the one result file."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    path: Path  # the result file the launcher named

    @property
    def writes(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistContext:
        """The worker's place from torchrun's variables, checked as a whole first (`_worker_env`)."""
        ctx = cls(**_worker_env(), path=Path(os.environ.get(ENV_RESULT, "")))
        if not dist.is_initialized():
            # gloo: the ranks exchange only barriers and small JSON points, on CPU and GPU machines alike
            dist.init_process_group("gloo", timeout=TIMEOUT)
        return ctx

    def device(self, choice: str) -> tuple[torch.device, str]:
        """cuda:LOCAL_RANK when GPUs are asked for (or auto finds them), else the CPU with this
        worker's share of the cores."""
        choice = choice.strip().lower()
        if choice in ("cuda", "auto") and torch.cuda.is_available():
            if self.local_rank >= torch.cuda.device_count():
                raise UserError(
                    f"rank {self.rank}: local rank {self.local_rank} but only {torch.cuda.device_count()} GPU(s)"
                )
            dev = torch.device("cuda", self.local_rank)
            use_cuda_device(dev)
            return dev, f"rank {self.rank}/{self.world_size}: {dev} ({device_name(dev)})"
        if choice not in ("cpu", "auto"):
            raise UserError(f"--device {choice} with --nproc-per-node: use auto, cpu or cuda (one GPU per worker)")

        share = max(1, (os.cpu_count() or 1) // self.local_world_size)
        torch.set_num_threads(share)
        numba.set_num_threads(min(share, numba.config.NUMBA_NUM_THREADS))
        return torch.device("cpu"), f"rank {self.rank}/{self.world_size}: cpu ({share} threads)"

    def barrier(self) -> None:
        dist.barrier()

    def start(self, result: RunResult) -> None:
        if self.writes:
            write_result(result, self.path)

    def add(self, result: RunResult, point: Point) -> None:
        """Gather this point of every rank on rank 0, which adds the aggregate and writes the file."""
        point.rank, point.world_size = self.rank, self.world_size
        if point.device == "cpu" and self.local_world_size > 1 and point.mfu_peak_tflops:
            # the CPU's workers share its cores: each is held to its share of the CPU's peak
            share = point.mfu_peak_tflops / self.local_world_size
            point.mfu_peak_tflops, point.mfu = share, point.delivered_tflops / share
            point.mfu_peak_source = f"1/{self.local_world_size} of {point.mfu_peak_source}"
        mine = json.dumps(asdict(point))
        gathered: list | None = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(mine, gathered, dst=0)
        if os.environ.get(ENV_FAIL_RANK) == str(self.rank):
            os._exit(3)  # tests only: a worker that dies after its first point
        if self.writes:
            rows = [point_from_dict(json.loads(g), f"rank {r}") for r, g in enumerate(gathered)]
            result.points += [*rows, aggregate(rows)]
            result.config["world_size"] = self.world_size
            write_result(result, self.path)

    def finish(self, result: RunResult) -> None:
        """The last write (rank 0) and the process group's end."""
        try:
            if self.writes:
                write_result(result, self.path)
        except (OSError, UserError):  # a full disk: the file keeps its last points and says it is incomplete
            mark_incomplete_in_place(self.path)
            raise
        finally:
            dist.destroy_process_group()


def _fleet_name(rows: list[Point]) -> str:
    """'8 x NVIDIA H100 80GB HBM3', or the mix: '4 x A + 4 x B'."""
    names = [p.device_name for p in rows]
    return " + ".join(f"{names.count(n)} x {n}" for n in sorted(set(names)))


def aggregate(rows: list[Point]) -> Point:
    """One row for the whole run from the per-rank rows of one point: throughput, samples, FLOPS,
    energy summed; every other field, latencies included, from the slowest rank (end-to-end p99)."""
    slowest = max(rows, key=lambda p: p.e2e.p99_ms)
    total = sum(p.throughput_sps for p in rows)
    delivered = sum(p.delivered_tflops for p in rows)
    energies = [p.energy for p in rows if p.energy and p.energy.get("joules") is not None]
    joules = sum(e["joules"] for e in energies) if len(energies) == len(rows) else None
    samples = sum(p.samples for p in rows)
    peaks = [p.mfu_peak_tflops for p in rows]
    peak_sum = sum(peaks) if all(peaks) else None
    energy = None
    if joules is not None:
        energy = dict(rows[0].energy, joules=joules, window_s=max(e["window_s"] for e in energies))
    avg_w = sum(e["joules"] / e["window_s"] for e in energies) if joules is not None else None
    return replace(
        slowest,
        device=f"{len(rows)} devices",
        device_name=_fleet_name(rows),
        window_s=max(p.window_s for p in rows),
        iterations=sum(p.iterations for p in rows),
        samples=samples,
        throughput_sps=total,
        delivered_tflops=delivered,
        infer_tflops=sum(p.infer_tflops for p in rows),
        pflops_equivalent=delivered / 1e3,
        mfu=delivered / peak_sum if peak_sum else None,
        mfu_peak_tflops=peak_sum,
        energy=energy,
        **energy_per_work(joules, samples, sum(p.flops_per_sample * p.samples for p in rows)),
        pflops_per_kw=pflops_per_kw(delivered, avg_w),
        flags=sorted({f for p in rows for f in p.flags}),
        rank=None,
        world_size=len(rows),
        aggregate=True,
        loadgen=_loadgen_sum(rows),
    )


def _loadgen_sum(rows: list[Point]) -> dict | None:
    """LoadGen over many devices: each rank ran its own test; VALID only if every rank's was."""
    tests = [p.loadgen for p in rows if p.loadgen]
    if not tests:
        return None
    rates = [t.get("samples_per_second") for t in tests]
    return {
        "scenario": tests[0]["scenario"],
        "result": "VALID" if all(t["result"] == "VALID" for t in tests) else "INVALID",
        "samples_per_second": sum(rates) if all(r is not None for r in rates) else None,
        "per_rank": [{"result": t["result"], "samples_per_second": t.get("samples_per_second")} for t in tests],
    }
