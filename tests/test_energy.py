"""Energy meters, driven through a fake sysfs folder, a fake power source and a fake NVML."""

import sys
import time
import types

import pytest

from harness.measure.energy import (
    AssumedMeter,
    Meter,
    NvmlMeter,
    PowerSampler,
    RaplMeter,
    counter_delta,
    integrate,
    rapl_packages,
    select_meter,
)
from harness.measure.metrics import energy_per_token, energy_per_work, run_metrics
from harness.results.schema import read_result


def make_rapl(root, zones):
    """zones: {name: (energy_uj, max_range_uj)}; returns a setter for energy_uj."""
    for name, (e, mx) in zones.items():
        z = root / name
        z.mkdir(parents=True)
        (z / "energy_uj").write_text(str(e))
        (z / "max_energy_range_uj").write_text(str(mx))

    def set_energy(name, e):
        (root / name / "energy_uj").write_text(str(e))

    return set_energy


def test_counter_delta_handles_wraparound():
    assert counter_delta(100, 250, 1000) == 150
    assert counter_delta(900, 50, 1000) == 150


def test_rapl_meter_sums_packages_and_wraps(tmp_path):
    set_e = make_rapl(
        tmp_path,
        {
            "intel-rapl:0": (1_000_000, 10_000_000),
            "intel-rapl:1": (9_900_000, 10_000_000),
            "intel-rapl:0:0": (5, 10),
        },  # a sub-zone (core): not counted
    )
    assert [z.name for z in rapl_packages(tmp_path)] == ["intel-rapl:0", "intel-rapl:1"]
    m = RaplMeter(tmp_path)
    m.start()
    set_e("intel-rapl:0", 3_000_000)  # +2 J
    set_e("intel-rapl:1", 400_000)  # wrapped: +0.1 J to the top, +0.4 J after = 0.5 J
    r = m.stop()
    assert r.measured and r.scope == "package" and "RAPL" in r.method
    assert r.joules == pytest.approx(2.5)


def test_select_meter_without_counters_says_not_measured(tmp_path):
    m = select_meter("cpu", root=tmp_path)
    assert type(m) is Meter
    m.start()
    r = m.stop()
    assert not r.measured and r.joules is None and "not measured" in r.method
    assert run_metrics(1e9, 10.0, 1.0, r)["joules_per_sample"] is None


def test_assumed_watts_is_labelled_an_estimate():
    m = select_meter("cpu", assume_watts=100.0)
    assert isinstance(m, AssumedMeter)
    m.start()
    time.sleep(0.05)
    r = m.stop()
    assert r.estimate and "ESTIMATE" in r.method and r.joules == pytest.approx(100 * r.window_s)
    assert r.measured is False and r.to_dict()["measured"] is False  # an estimate is never recorded as measured
    with pytest.raises(ValueError):
        AssumedMeter(0, "package")


def test_integrate_by_hand():
    assert integrate([(0.0, 100.0), (1.0, 100.0), (3.0, 200.0)]) == pytest.approx(100 + 300)


def test_power_sampler_integrates_a_fake_source():
    s = PowerSampler(lambda: 50.0, hz=50)
    s.start()
    time.sleep(0.3)
    joules, covered, n = s.stop()
    assert joules == pytest.approx(50 * covered, rel=1e-9)
    assert n >= 5
    with pytest.raises(ValueError):
        PowerSampler(lambda: 1.0, hz=5)


def fake_nvml(monkeypatch, counter_moves=True, reasons=0):
    nv = types.ModuleType("pynvml")
    state = {"mj": 1_000_000}
    nv.NVML_CLOCK_SM = 1
    nv.nvmlInit = lambda: None
    nv.nvmlDeviceGetHandleByIndex = lambda i: "h"

    def energy(h):
        if counter_moves:
            state["mj"] += 10_000  # +10 J per read
        return state["mj"]

    nv.nvmlDeviceGetTotalEnergyConsumption = energy
    nv.nvmlDeviceGetPowerUsage = lambda h: 300_000  # 300 W
    nv.nvmlDeviceGetClockInfo = lambda h, c: 1980
    nv.nvmlDeviceGetCurrentClocksEventReasons = lambda h: reasons
    monkeypatch.setitem(sys.modules, "pynvml", nv)


def test_nvml_counter(monkeypatch):
    fake_nvml(monkeypatch)
    m = NvmlMeter(0)
    m.start()
    r = m.stop()
    assert r.method == "NVML total-energy counter" and r.joules == pytest.approx(10.0) and r.scope == "device"
    assert r.clocks["sm_mhz_max"] == 1980 and not r.clocks["throttled"]


def test_nvml_falls_back_to_sampling_and_reports_throttling(monkeypatch):
    fake_nvml(monkeypatch, counter_moves=False, reasons=0x4 | 0x40)
    m = NvmlMeter(0)
    m.idle(0.1)
    assert m.idle_w == pytest.approx(300)
    m.start()
    time.sleep(0.2)
    r = m.stop()
    assert "sampled" in r.method and r.joules == pytest.approx(300 * r.window_s, rel=0.2)
    assert r.clocks["throttled"] and r.clocks["throttle_reasons"] == ["hw_thermal", "sw_power_cap"]


def test_run_metrics_by_hand():
    from harness.measure.energy import EnergyReading

    r = EnergyReading(True, 200.0, 2.0, "device", "test")  # 100 W average
    m = run_metrics(1e12, 50.0, 100.0, r)  # 1 TFLOP/sample x 50/s = 50 TFLOPS
    assert m["delivered_tflops"] == pytest.approx(50) and m["mfu"] == pytest.approx(0.5)
    assert m["pflops_equivalent"] == pytest.approx(0.05)
    assert m["joules_per_sample"] == pytest.approx(200 / 100)  # 100 samples in the 2 s window
    assert m["joules_per_pflop"] == pytest.approx(200 / 0.1)  # 0.1 PFLOP done
    assert m["pflops_per_kw"] == pytest.approx(0.05 / 0.1)
    assert run_metrics(1e12, 50.0, None, r)["mfu"] is None


def test_energy_per_token_is_energy_per_work_per_token():
    e = energy_per_token(30.0, 600, 3e15)  # 30 J for 600 output tokens and 3 PFLOP
    assert e == {"joules_per_token": pytest.approx(0.05), "joules_per_pflop": pytest.approx(10.0)}
    work = energy_per_work(30.0, 600, 3e15)
    assert (e["joules_per_token"], e["joules_per_pflop"]) == (work["joules_per_sample"], work["joules_per_pflop"])
    assert energy_per_token(None, 600, 3e15) == {"joules_per_token": None, "joules_per_pflop": None}
    assert energy_per_token(30.0, 0, 0) == {"joules_per_token": None, "joules_per_pflop": None}  # nothing generated


LLM = ["llm-tiny", "--device", "cpu", "--prompt-len", "8", "--output-len", "4", "--min-duration", "0"]
VISION = ["steel-defect-mobilenetv3", "--device", "cpu", "--min-duration", "0", "--warmup", "1", "-b", "2"]


def test_assumed_watts_end_to_end_is_an_estimate_never_a_measurement(invoke, tmp_path):
    """--assume-watts through run-llm, run and report: the result records measured false and
    estimate true; J/token, J/sample and J/PFLOP are the estimate's (given, not dropped), flagged
    energy_estimated; the vision table and the report's caveats call it an estimate."""
    r = invoke("run-llm", *LLM, "--min-iters", "2", "--assume-watts", "50", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    (p,) = read_result(next(tmp_path.glob("*.json"))).points
    e = p.energy
    assert e["measured"] is False and e["estimate"] is True and e["method"].startswith("ESTIMATE: 50 W assumed")
    assert e["joules"] == pytest.approx(50 * e["window_s"]) and "energy_estimated" in p.flags
    assert p.joules_per_token == pytest.approx(e["joules"] / (p.output_tokens_per_s * p.window_s))
    assert p.joules_per_pflop is not None and p.joules_per_pflop > 0

    v = invoke(
        "run",
        *VISION,
        "--min-iters",
        "3",
        "--image-size",
        "96x64",
        "--num-images",
        "1",
        "--assume-watts",
        "50",
        "--out",
        tmp_path / "v",
    )
    assert v.exit_code == 0, v.output
    (q,) = read_result(next((tmp_path / "v").glob("*.json"))).points
    assert q.energy["measured"] is False and q.energy["estimate"] is True and "energy_estimated" in q.flags
    assert q.energy["joules"] == pytest.approx(50 * q.energy["window_s"])
    assert q.joules_per_sample == pytest.approx(50 / q.throughput_sps)  # the assumed watts / samples per second
    assert q.joules_per_pflop == pytest.approx(50 / (q.throughput_sps * q.flops_per_sample / 1e15))
    assert "(estimate)" in v.stdout  # the table labels the J/sample it shows

    rep = invoke("report", next(tmp_path.glob("*.json")), next((tmp_path / "v").glob("*.json")), "-o", tmp_path / "rep")
    assert rep.exit_code == 0, rep.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.count("energy is an ESTIMATE from --assume-watts, not measured") == 2  # one line per point
    assert "energy not measured" not in md  # an estimate is neither dropped nor called missing
