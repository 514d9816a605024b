"""Scale-out and standard load: two CPU workers through torchrun (gloo), and MLPerf LoadGen scenarios."""

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.errors import UserError
from harness.results.schema import read_result
from harness.vision.distributed import ENV_FAIL_RANK, strip_launch_options, torchrun_args
from harness.vision.loadgen import loadgen_throughput, parse_summary

FAST = ["--min-duration", "0.3", "--min-iters", "2", "--warmup", "1", "--image-size", "320x240", "--num-images", "2"]
MODEL = "steel-defect-mobilenetv3"


def modelpower(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "harness", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def only_result(folder):
    (path,) = folder.glob("*.json")
    return read_result(path)


@pytest.mark.slow  # torchrun: two worker processes
def test_two_cpu_workers_with_gloo_aggregate_is_consistent_with_the_ranks(tmp_path):
    r = modelpower("run", MODEL, "-b", "1", "--device", "cpu", "--nproc-per-node", "2", *FAST, "--out", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    res = only_result(tmp_path)
    assert res.status == "complete" and res.config["world_size"] == 2
    assert next(tmp_path.glob("*.json")).stem.endswith(res.run_id)
    ranks = [p for p in res.points if not p.aggregate]
    (agg,) = [p for p in res.points if p.aggregate]
    assert sorted(p.rank for p in ranks) == [0, 1] and all(p.world_size == 2 for p in res.points)
    assert agg.rank is None and agg.device == "2 devices"
    assert agg.throughput_sps == pytest.approx(sum(p.throughput_sps for p in ranks))
    assert agg.samples == sum(p.samples for p in ranks)
    assert agg.delivered_tflops == pytest.approx(sum(p.delivered_tflops for p in ranks))
    assert agg.e2e.p99_ms == max(p.e2e.p99_ms for p in ranks)  # the slowest rank's latency
    # each CPU worker is held to its share of the CPU's peak; the aggregate to the whole CPU
    assert agg.mfu_peak_tflops == pytest.approx(sum(p.mfu_peak_tflops for p in ranks))
    assert agg.mfu == pytest.approx(agg.delivered_tflops / agg.mfu_peak_tflops)
    assert agg.device_name == f"2 x {ranks[0].device_name}"


@pytest.mark.slow  # torchrun: two worker processes
def test_a_dead_worker_fails_the_run_naming_its_rank_and_keeps_partial_results(tmp_path):
    r = modelpower(
        "run",
        MODEL,
        "-b",
        "1,2",
        "--device",
        "cpu",
        "--nproc-per-node",
        "2",
        *FAST,
        "--out",
        tmp_path,
        env={ENV_FAIL_RANK: "1"},
    )
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("modelpower: error: worker rank 1 (exit code 3") and "partial results kept" in last
    res = only_result(tmp_path)
    assert res.status == "incomplete" and "rank 1" in res.notes[-1]
    assert [p.batch_size for p in res.points] == [1, 1, 1]  # batch 1 gathered before the failure


def test_launcher_arguments():
    argv = ["run", "m", "--nproc-per-node", "2", "--nnodes=2", "-b", "1", "--rdzv-endpoint", "h:1", "--node-rank", "1"]
    assert strip_launch_options(argv) == ["run", "m", "-b", "1"]
    assert torchrun_args(2, 1, 0, None, ["run", "m"]) == [
        "--nproc-per-node=2",
        "--standalone",
        "-m",
        "harness",
        "run",
        "m",
    ]
    multi = torchrun_args(8, 2, 1, "host:29500", ["run"])
    assert "--rdzv-backend=c10d" in multi and "--rdzv-endpoint=host:29500" in multi and "--node-rank=1" in multi
    for bad in [(2, 2, 0, None), (2, 2, 2, "h:1"), (0, 1, 0, None), (2, 2, 0, "nohostport")]:
        with pytest.raises(UserError):
            torchrun_args(*bad, ["run"])


SUMMARY = """================================================
MLPerf Results Summary
================================================
SUT name : PySUT
Scenario : Offline
Mode     : PerformanceOnly
Samples per second: 644869
Result is : INVALID
  Min duration satisfied : NO
Recommendations:
 * Increase expected QPS so the loadgen pre-generates a larger (coalesced) query.
================================================
Additional Stats
================================================
Min latency (ns)                : 3411547
90.00 percentile latency (ns)   : 3411547.5
"""


def test_parse_loadgen_summary():
    s = parse_summary(SUMMARY)
    assert s["Scenario"] == "Offline" and s["Result is"] == "INVALID" and s["Min duration satisfied"] == "NO"
    assert s["Samples per second"] == 644869 and s["90.00 percentile latency (ns)"] == 3411547.5
    assert loadgen_throughput(s, "offline") == 644869
    assert loadgen_throughput({"QPS w/o loadgen overhead": 12.5}, "singlestream") == 12.5


@pytest.mark.slow  # LoadGen runs a scenario for at least a second
@pytest.mark.parametrize("scenario,batch", [("offline", 4), ("singlestream", 1)])
def test_loadgen_scenarios_on_cpu_carry_loadgens_verdict(tmp_path, scenario, batch):
    args = [
        MODEL,
        "--scenario",
        scenario,
        "-b",
        batch,
        "--device",
        "cpu",
        "--min-duration",
        "1",
        "--loadgen-samples",
        "16",
        "--image-size",
        "320x240",
        "--num-images",
        "2",
        "--out",
        tmp_path,
    ]
    r = CliRunner().invoke(app, ["run", *map(str, args)])
    assert r.exit_code == 0, r.output
    res = only_result(tmp_path)
    (p,) = res.points
    lg = p.loadgen
    assert lg["scenario"] == scenario and lg["result"] == lg["summary"]["Result is"]  # LoadGen's own verdict
    satisfied = [v for k, v in lg["summary"].items() if k.endswith("satisfied")]
    assert satisfied and (lg["result"] == "VALID") == all(v == "Yes" for v in satisfied)
    assert lg["summary"]["Scenario"] == {"offline": "Offline", "singlestream": "SingleStream"}[scenario]
    assert tmp_path / f"{res.run_id}" not in tmp_path.iterdir()  # logs sit beside the result, named after it
    assert any(tmp_path.glob("*-loadgen/*/mlperf_log_summary.txt"))
    assert p.samples > 0 and p.throughput_sps > 0 and p.delivered_tflops > 0
    # LoadGen's own throughput and ours (first issue to last completion) describe the same test
    assert lg["samples_per_second"] == pytest.approx(p.throughput_sps, rel=0.3)
    assert ("loadgen_invalid" in p.flags) == (lg["result"] != "VALID")
    assert f"LoadGen {MODEL} b{batch} {scenario}: {lg['result']}" in r.output


def test_loadgen_bad_input_is_one_line(tmp_path):
    r = CliRunner().invoke(app, ["run", MODEL, "--scenario", "multistream", "-b", "4", "--device", "cpu"])
    assert r.exit_code == 2 and "use -b 8" in r.stderr
    r = CliRunner().invoke(app, ["run", MODEL, "--scenario", "nope", "--device", "cpu"])
    assert r.exit_code == 2 and "unknown --scenario" in r.stderr
    r = CliRunner().invoke(app, ["run", MODEL, "--claim-grade", "--device", "cpu"])
    assert r.exit_code == 2 and "add --scenario" in r.stderr


def test_aggregate_of_loadgen_ranks_is_valid_only_if_every_rank_is():
    from dataclasses import replace

    from harness.vision.distributed import aggregate
    from tests.helpers import make_point

    base = make_point()
    rows = [
        replace(base, rank=r, world_size=2, loadgen={"scenario": "offline", "result": v, "samples_per_second": s})
        for r, (v, s) in enumerate([("VALID", 100.0), ("INVALID", 80.0)])
    ]
    agg = aggregate(rows)
    assert agg.aggregate and agg.loadgen["result"] == "INVALID" and agg.loadgen["samples_per_second"] == 180.0
    assert agg.throughput_sps == pytest.approx(2 * base.throughput_sps)


@pytest.mark.slow  # LoadGen's server scenario, at least a second
def test_loadgen_server_reports_whether_the_latency_bound_held(tmp_path):
    args = [
        MODEL,
        "--scenario",
        "server",
        "-b",
        "2",
        "--device",
        "cpu",
        "--min-duration",
        "1",
        "--target-qps",
        "20",
        "--latency-bound-ms",
        "2000",
        "--loadgen-samples",
        "8",
        "--image-size",
        "320x240",
        "--num-images",
        "2",
        "--out",
        tmp_path,
    ]
    r = CliRunner().invoke(app, ["run", *map(str, args)])
    assert r.exit_code == 0, r.output
    (p,) = only_result(tmp_path).points
    lg = p.loadgen
    assert lg["scenario"] == "server" and lg["server_target_qps"] == 20 and lg["server_latency_bound_ms"] == 2000
    held = lg["summary"]["Performance constraints satisfied"]
    assert f"latency bound 2000.0 ms held: {held}" in r.output  # what LoadGen said, not our guess
    p99_ms = lg["summary"]["99.00 percentile latency (ns)"] / 1e6
    assert (held == "Yes") == (p99_ms <= 2000), (held, p99_ms)


@pytest.mark.parametrize("scenario,queries", [("offline", 1), ("singlestream", 1024), ("server", 270_336)])
def test_claim_grade_sets_mlperf_minimums(scenario, queries):
    from harness.vision.loadgen import LoadgenConfig, import_loadgen
    from harness.vision.loadgen import loadgen_settings as settings_for

    lg = import_loadgen()
    short = settings_for(lg, LoadgenConfig(scenario, 2.0), batch_s=0.01, batch_size=4)
    grade = settings_for(lg, LoadgenConfig(scenario, 2.0, claim_grade=True), batch_s=0.01, batch_size=4)
    assert short.min_duration_ms == 2000 and grade.min_duration_ms == 600_000
    assert grade.min_query_count == queries and short.min_query_count <= 64
    assert short.offline_expected_qps == pytest.approx(1.5 * 4 / 0.01)  # above the calibrated rate
    assert short.server_target_qps == pytest.approx(4 / 0.01 / 2)  # no --target-qps: half of it
    assert short.server_target_latency_ns == 15_000_000


def test_sut_with_two_batches_in_flight_completes_every_sample_once():
    """Two SUT workers (on a GPU: one CUDA stream each) share the queue: every sample is reported
    exactly once, in batches of at most the batch size, and the SUT's own overhead is measured."""
    import threading
    import time
    import types

    import torch

    from harness.vision.loadgen import BatchingSUT

    done, workers = [], set()

    class FakeLG:
        def QuerySampleResponse(self, qid, data, size):
            return qid

        def QuerySamplesComplete(self, responses):
            done.extend(responses)

    def run_model(x):
        workers.add(threading.current_thread().name)
        time.sleep(0.01)
        return x.sum(dim=(1, 2, 3))

    pipe = types.SimpleNamespace(run_model=run_model, finish=lambda ctx: None)
    sut = BatchingSUT(FakeLG(), pipe, torch.zeros(10, 3, 4, 4), {}, 4, workers=2)
    q = [types.SimpleNamespace(id=1000 + k, index=k % 10) for k in range(37)]
    for k in range(0, 37, 5):
        sut.issue(q[k : k + 5])
        time.sleep(0.005)
    deadline = time.time() + 10
    while len(done) < 37 and time.time() < deadline:
        time.sleep(0.01)
    sut.close()
    assert sorted(done) == [1000 + k for k in range(37)] and sut.completed == 37
    assert len(sut.latency_s) == 37 and len(sut.batch_s) >= 10  # at most 4 samples a batch
    assert 0 < sut.overhead_s < sum(sut.batch_s) and len(workers) == 2 and sut.workers == 2  # reporting is timed
