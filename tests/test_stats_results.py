"""Latency statistics, and the result schema: round trip, atomic write, validation."""

import json
from dataclasses import asdict

import numpy as np
import pytest

from harness.errors import UserError
from harness.measure.stats import latency_stats
from harness.results.schema import read_result, write_result
from tests.helpers import make_point, make_result


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
