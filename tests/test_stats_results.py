"""Latency statistics, and the result schema: round trip, atomic write, validation."""

import json
from dataclasses import asdict

import numpy as np
import pytest

from harness.errors import UserError
from harness.measure.stats import latency_stats
from harness.results.schema import read_result, write_result
from tests.helpers import make_llm_point, make_point, make_result


def test_latency_stats_match_numpy(rng):
    s = rng.exponential(0.01, 1000)
    st = latency_stats(s)
    ms = s * 1e3
    assert st.count == 1000
    assert st.mean_ms == pytest.approx(ms.mean())
    assert st.min_ms == ms.min() and st.max_ms == ms.max()
    assert st.p50_ms == pytest.approx(np.median(ms))
    assert st.p99_ms == pytest.approx(np.percentile(ms, 99))
    assert st.stdev_ms == pytest.approx(ms.std(ddof=1))
    assert st.cov == pytest.approx(ms.std(ddof=1) / ms.mean())
    assert st.min_ms <= st.p50_ms <= st.p90_ms <= st.p95_ms <= st.p99_ms <= st.max_ms


def test_latency_stats_single_value_and_empty():
    st = latency_stats([0.002])
    assert st.count == 1 and st.stdev_ms == 0 and st.cov == 0 and st.p99_ms == pytest.approx(2.0)
    with pytest.raises(ValueError):
        latency_stats([])
    assert latency_stats([1.0, 1.0, 3.0]).high_cov and not latency_stats([1.0, 1.01]).high_cov


def test_result_round_trip(tmp_path):
    r = make_result([make_point(), make_point(batch_size=8, flags=["high_cov_e2e"])])
    path = tmp_path / "r.json"
    write_result(r, path)
    back = read_result(path)
    assert asdict(back) == asdict(r)
    assert back.points[1].e2e.p99_ms == r.points[1].e2e.p99_ms
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_estimates_and_skipped_points_round_trip_as_what_they_are(tmp_path):
    """An --assume-watts reading stays measured false, estimate true, with its figures; a point
    estimated not to fit stays 'skipped' (no figures), a real out-of-memory 'oom'."""
    from harness.measure.energy import EnergyReading

    est = EnergyReading(False, 100.0, 2.0, "package", "ESTIMATE: 50 W assumed", estimate=True)
    skipped = dict(status="skipped", flags=["skipped"], runs=0, window_s=None, ttft=None, itl=None)
    r = make_result(
        [
            make_point(energy=est.to_dict(), joules_per_sample=0.5, flags=est.flags()),
            make_llm_point(
                **skipped, detail="would not fit (estimated: needs about 9.0 GiB of host memory, 1.0 GiB is free)"
            ),
            make_llm_point(status="oom", flags=["oom"], detail="out of memory: CUDA out of memory"),
        ]
    )
    r.failed = [{"label": "m b64", "kind": "skipped", "detail": "would not fit (estimated: ...)"}]
    path = tmp_path / "r.json"
    write_result(r, path)
    est_point, skip, oom = (back := read_result(path)).points
    assert asdict(back) == asdict(r)
    assert est_point.energy["measured"] is False and est_point.energy["estimate"] is True
    assert est_point.energy["avg_w"] == 50.0 and est_point.joules_per_sample == 0.5
    assert est_point.flags == ["energy_estimated"]
    assert (skip.status, skip.ttft, skip.detail[:15]) == ("skipped", None, "would not fit (")
    assert oom.status == "oom" and back.failed[0]["kind"] == "skipped"


def test_write_is_atomic_on_failure(tmp_path):
    path = tmp_path / "r.json"
    write_result(make_result([]), path)
    bad = make_result([make_point(output_check={"x": object()})])  # not JSON-serialisable
    with pytest.raises(TypeError):
        write_result(bad, path)
    assert read_result(path).points == []  # the old file is intact
    assert len(list(tmp_path.iterdir())) == 1


def test_read_rejects_bad_files(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(UserError, match="cannot read result file"):
        read_result(p)
    p.write_text(json.dumps({"schema_version": 999}))
    with pytest.raises(UserError, match="schema version 999"):
        read_result(p)
    d = make_result([make_point()]).to_dict()
    del d["points"][0]["throughput_sps"]
    p.write_text(json.dumps(d))
    with pytest.raises(UserError, match="throughput_sps"):
        read_result(p)
