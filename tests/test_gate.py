"""The regression gate: intervals by hand, verdicts, and `compare --fail-on-regression` end to end."""

import copy
import json
import math
from xml.etree import ElementTree

import pytest

from harness.verdicts.gate import Side, interval, t_quantile_975, verdict


def test_t_quantile_against_tables():
    for df, t in [(1, 12.706), (2, 4.303), (2.7, 4.303), (3, 3.182), (10, 2.228), (30, 2.042), (1e9, 1.960)]:
        assert t_quantile_975(df) == pytest.approx(t, rel=0.002)


def test_interval_by_hand():
    ratio, low, high = interval(Side(100, 0.01, 20), Side(80, 0.01, 20))
    se, df = math.sqrt(2) * 0.01, 38  # equal sides: Welch's df = 2 (n - 1)
    half = t_quantile_975(df) * se  # 2.024 x 0.01414 = 0.0286
    assert ratio == pytest.approx(0.8)
    assert (low, high) == pytest.approx((0.8 * math.exp(-half), 0.8 * math.exp(half)))
    assert (round(low, 3), round(high, 3)) == (0.777, 0.823)


@pytest.mark.parametrize(
    ("ratio", "low", "high", "want"),
    [
        (1.0, 0.9, 1.1, "pass"),  # not slower
        (1.2, 1.1, 1.3, "pass"),
        (0.97, 0.90, 1.04, "inconclusive"),  # slower within noise
        (0.80, 0.75, 0.85, "fail"),  # beyond noise and beyond 5%
        (0.97, 0.96, 0.98, "pass"),  # beyond noise, within 5%
        (0.94, 0.92, 0.97, "inconclusive"),  # the interval straddles 1 - 5%
    ],
)
def test_verdicts(ratio, low, high, want):
    assert verdict(ratio, low, high, 0.05, higher_is_better=True) == want
    # latency mirrors it: a 1/ratio rise in p99
    assert verdict(1 / ratio, 1 / high, 1 / low, 0.05, higher_is_better=False) == want


@pytest.fixture(scope="module")
def base(invoke, tmp_path_factory):
    """A real result, its noise set to a known series: 20 batches at CoV 0.1."""
    folder = tmp_path_factory.mktemp("base")
    fast = [
        "--device",
        "cpu",
        "--min-duration",
        "0",
        "--min-iters",
        "2",
        "--warmup",
        "1",
        "--image-size",
        "96x64",
        "--num-images",
        "1",
        "-b",
        "1,2",
    ]
    r = invoke("run", "steel-defect-mobilenetv3", *fast, "--out", folder)
    assert r.exit_code == 0, r.output
    doc = json.loads(next(folder.glob("*.json")).read_text())
    for p in doc["points"]:
        p["e2e"].update(count=20, cov=0.1, stdev_ms=0.1 * p["e2e"]["mean_ms"])
    return doc


def scaled(doc, factor: float, tmp_path, name: str):
    """A copy whose throughput is `factor` times the base's, per-batch times scaled to match."""
    d = copy.deepcopy(doc)
    for p in d["points"]:
        p["throughput_sps"] *= factor
        for k in ("mean_ms", "min_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "stdev_ms"):
            p["e2e"][k] /= factor
    f = tmp_path / f"{name}.json"
    f.write_text(json.dumps(d))
    return f


def test_gate_fails_on_a_real_regression_and_passes_an_identical_copy(invoke, tmp_path, base):
    a = scaled(base, 1.0, tmp_path, "a")
    r = invoke("compare", a, scaled(base, 1.0, tmp_path, "same"), "--fail-on-regression", 5)
    assert r.exit_code == 0, r.output
    assert "0 failed" in r.stdout and "2 passed" in r.stdout
    junit, md = tmp_path / "gate.xml", tmp_path / "gate.md"
    r = invoke(
        "compare", a, scaled(base, 0.8, tmp_path, "slow"), "--fail-on-regression", 5, "--junit", junit, "--markdown", md
    )
    assert r.exit_code == 1, r.output
    assert "2 failed" in r.stdout and "FAIL" in r.stdout
    suite = ElementTree.parse(junit).getroot()
    cases = suite.findall("testcase")
    assert suite.get("failures") == "2" and len(cases) == 2
    assert {c.get("name") for c in cases} == {
        "steel-defect-mobilenetv3 torch fp32 b1",
        "steel-defect-mobilenetv3 torch fp32 b2",
    }
    assert all(c.find("failure") is not None and "new/base 0.800" in c.find("failure").get("message") for c in cases)
    assert "FAILED" in md.read_text() and "| fail |" in md.read_text()


def test_a_small_dip_within_noise_is_inconclusive_not_a_failure(invoke, tmp_path, base):
    a = scaled(base, 1.0, tmp_path, "a")
    junit = tmp_path / "gate.xml"
    r = invoke("compare", a, scaled(base, 0.97, tmp_path, "dip"), "--fail-on-regression", 5, "--junit", junit)
    assert r.exit_code == 0, r.output
    assert "2 inconclusive" in r.stdout
    assert all(c.find("skipped") is not None for c in ElementTree.parse(junit).getroot().findall("testcase"))


def test_latency_gate(invoke, tmp_path, base):
    a = scaled(base, 1.0, tmp_path, "a")
    r = invoke("compare", a, scaled(base, 0.5, tmp_path, "slow"), "--fail-on-latency", 10)
    assert r.exit_code == 1 and "p99 latency" in r.stdout, r.output


def test_missing_points_are_listed_and_fail_only_when_required(invoke, tmp_path, base):
    a = scaled(base, 1.0, tmp_path, "a")
    d = copy.deepcopy(base)
    d["points"] = d["points"][:1]
    b = tmp_path / "b.json"
    b.write_text(json.dumps(d))
    r = invoke("compare", a, b, "--fail-on-regression", 5)
    assert r.exit_code == 0 and "missing" in r.stdout, r.output
    r = invoke("compare", a, b, "--fail-on-regression", 5, "--require-all")
    assert r.exit_code == 1 and "FAIL" in r.stdout, r.output


@pytest.mark.parametrize("pct", ["-5", "150", "nan", "abc", "0"])
def test_bad_thresholds_are_one_line(invoke, tmp_path, base, pct):
    a = scaled(base, 1.0, tmp_path, "a")
    r = invoke("compare", a, a, "--fail-on-regression", pct)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("modelpower: error:"), r.stderr


def test_gate_options_need_the_gate(invoke, tmp_path, base):
    a = scaled(base, 1.0, tmp_path, "a")
    r = invoke("compare", a, a, "--junit", tmp_path / "x.xml")
    assert r.exit_code == 2 and "add --fail-on-regression" in r.stderr


def test_run_to_run_spread_widens_the_interval(invoke, tmp_path, base):
    a, slow = scaled(base, 1.0, tmp_path, "a"), scaled(base, 0.8, tmp_path, "slow")
    assert invoke("compare", a, slow, "--fail-on-regression", 5).exit_code == 1
    r = invoke("compare", a, slow, "--fail-on-regression", 5, "--run-to-run", 20)
    assert r.exit_code == 0 and "inconclusive" in r.stdout, r.output  # a 20% spread hides a 20% dip


def test_a_point_that_runs_out_of_memory_in_the_new_set_fails():
    from harness.verdicts.gate import gate

    base = {"_label": "llm b8", "throughput": 100.0, "_cov": 0.1, "_n": 20, "flags": ""}
    new = {"_label": "llm b8", "throughput": None, "_cov": None, "_n": None, "flags": "oom"}
    (c,) = gate([(base, new)], "throughput", 0.05)
    assert c.verdict == "fail" and "out of memory" in c.note


@pytest.mark.parametrize("where", ["base", "new"])
def test_a_point_skipped_in_either_set_is_missing_not_measured(where):
    """Estimated not to fit, never run: no figure to compare, so neither a pass nor a regression (nor
    'no noise data'); a failure only when every point is required."""
    from harness.verdicts.gate import gate

    ran = {"_label": "llm b8", "throughput": 100.0, "_cov": 0.1, "_n": 20, "flags": ""}
    skipped = {"_label": "llm b8", "throughput": None, "_cov": None, "_n": None, "flags": "skipped skipped"}
    pair = (skipped, ran) if where == "base" else (ran, skipped)
    for metric in ("throughput", "p99 latency"):
        (c,) = gate([pair], metric, 0.05)
        assert c.verdict == "missing" and c.ratio is None, c
        assert c.note == f"not run in the {'base' if where == 'base' else 'new set'} (skipped: estimated not to fit)"
    (c,) = gate([pair], "throughput", 0.05, required=True)
    assert c.verdict == "fail"


def test_compare_lists_a_skipped_llm_point_as_missing(invoke, tmp_path):
    """End to end: a run-llm result with a point estimated not to fit, gated against itself."""
    llm = ["llm-tiny", "--device", "cpu", "--prompt-len", "8", "--output-len", "4", "--min-duration", "0"]
    r = invoke("run-llm", *llm, "--min-iters", "3", "-b", "1,50000000", "--out", tmp_path / "a")
    assert r.exit_code == 0, r.output
    a = next((tmp_path / "a").glob("*.json"))
    junit = tmp_path / "gate.xml"
    r = invoke("compare", a, a, "--fail-on-regression", 5, "--junit", junit)
    assert r.exit_code == 0, r.output
    assert "0 failed, 0 inconclusive" in r.stdout and "1 passed" in r.stdout, r.stdout
    cases = {c.get("name"): c for c in ElementTree.parse(junit).getroot().findall("testcase")}
    (name,) = [n for n in cases if " b50000000 " in n]
    skipped = cases[name].find("skipped")
    assert skipped is not None and "missing, not run in the base and the new set" in skipped.get("message")
