"""The claim checker: hand-computed arithmetic, precision mismatches, claim-file errors, the CLI."""

import json

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.verdicts.claims import Claim, ClaimError, check_capacity, check_equivalence, check_speedup, load_claims
from tests.helpers import make_point


def cap(**values) -> Claim:
    return Claim(
        "t", "capacity", "", "", {"p": 11000, "precision": "fp16", "devices": ["NVIDIA H100 SXM5 80GB"], **values}
    )


def test_capacity_device_count_by_hand():
    v = check_capacity(cap(), [])
    line = next(s for s in v.steps if s.startswith("fp16 on NVIDIA H100"))
    assert "11,000,000 / 989.4 TFLOPS dense = 11,118 devices" in line  # 11e6 / 989.4 = 11117.85
    assert "counted: 5,559" in line  # the 2x sparse figure halves it
    assert "7.78 MW at 700 W" in line  # 11117.85 x 700 W
    assert "not measured" in v.verdict


def test_capacity_delivered_and_power_from_a_measurement():
    pt = make_point(precision="fp16", mfu=0.3, mfu_precision="fp16", mfu_peak_tflops=989.4, joules_per_pflop=2000.0)
    v = check_capacity(cap(), [pt])
    assert any("deliver 3,300 P-equivalent" in s and "drawing 6.6 MW" in s for s in v.steps)  # 11000 x 0.3
    assert "at most 3,300 P-equivalent" in v.verdict and "at least 3.3x" in v.verdict


def test_precision_mismatch_is_flagged_not_compared():
    fp64 = make_point(precision="fp64", mfu=0.5, mfu_precision="fp64", mfu_peak_tflops=34)
    v = check_capacity(cap(), [fp64])
    assert v.not_comparable and "measured at fp64, the claim is in fp16 P" in v.not_comparable[0][2]
    assert not any("P-equivalent" in s for s in v.steps if not s.startswith("not comparable"))
    assert "not measured" in v.verdict


def test_unstated_precision_reads_every_plausible_one():
    v = check_capacity(cap(precision="unstated"), [])
    assert {s.split(" on ")[0] for s in v.steps[1:]} == {"fp16", "int8", "fp32", "fp64"}
    assert "does not state the precision" in v.verdict


def test_category_sets_the_conventional_precision_and_leads_the_verdict():
    v = check_capacity(cap(precision="unstated", category="supercomputing"), [])
    assert "supercomputing compute is counted at fp64_tensor/fp64 by convention (read first)" in v.steps[0]
    readings = [s.split(" on ")[0] for s in v.steps[1:]]
    assert readings[:2] == ["fp64_tensor", "fp64"] and set(readings) == {"fp64_tensor", "fp64", "fp16", "int8", "fp32"}
    assert "11,000,000 / 67 TFLOPS dense = 164,179" in v.steps[1]  # HPL runs on the FP64 tensor cores
    assert v.verdict.startswith("Read as supercomputing compute (fp64_tensor/fp64 by convention)")
    assert "does not state the precision" in v.verdict  # the other readings stay, and so does the caveat
    g = check_capacity(cap(precision="unstated", category="general"), [])
    assert [s.split(" on ")[0] for s in g.steps[1:3]] == ["fp32", "fp64"]
    explicit = check_capacity(cap(precision="int8", category="intelligent"), [])  # an explicit precision wins
    assert {s.split(" on ")[0] for s in explicit.steps[1:]} == {"int8"}


def test_stated_utilisation_against_measured_mfu_by_hand():
    pt = make_point(precision="fp16", mfu=0.3, mfu_precision="fp16", mfu_peak_tflops=989.4)
    v = check_capacity(cap(utilisation=0.6, utilisation_of="peak_flops"), [pt])
    line = next(s for s in v.steps if s.startswith("taken as delivered"))
    assert "6,600 P of useful work (11,000 x 0.6)" in line and "2.0x what was measured" in line  # 0.6 / 0.3
    busy = check_capacity(cap(utilisation=0.6, utilisation_of="cpu_time"), [pt])
    line = next(s for s in busy.steps if s.startswith("a busy rate"))
    assert "at most 6,600 P-equivalent" in line and "1,980 P-equivalent at that MFU" in line  # 11000 x 0.6 x 0.3
    assert any("not how much of their peak" in s for s in busy.steps)


def test_equivalence_and_speedup_by_hand():
    v = check_equivalence(
        Claim("e", "equivalence", "", "", {"p": 10000, "computers": 5_000_000}),
        {"name": "box", "how": "test", "fp32": 0.2, "fp64": 0.1},
    )
    assert "2 TFLOPS per 'computer'" in v.steps[0]
    assert "10.0x this machine at fp32" in v.verdict and "20.0x this machine at fp64" in v.verdict
    s = check_speedup(Claim("s", "speedup", "", "", {"before_s": 3600, "after_s": 60}))
    assert "60x" in s.steps[0] and "60x the delivered compute" in s.verdict


@pytest.mark.parametrize(
    "body,error",
    [
        ('[[claim]]\nid="a"\nkind="capacity"\np=1', "version = 1"),
        ('version=1\n[[claim]]\nid="a"\nkind="magic"\np=1', "kind must be one of"),
        ('version=1\n[[claim]]\nid="a"\nkind="capacity"', "needs p"),
        ('version=1\n[[claim]]\nid="a"\nkind="capacity"\np=-5', "positive finite number"),
        ('version=1\n[[claim]]\nid="a"\nkind="capacity"\np=1\nprecision="fp12"', "precision must be"),
        ('version=1\n[[claim]]\nid="a"\nkind="capacity"\np=1\ndevices=["Nope 9000"]', "not in the spec table"),
        ('version=1\n[[claim]]\nid="a"\nkind="capacity"\np=1\nwatts=3', "unknown field"),
        (
            'version=1\n[[claim]]\nid="a"\nkind="speedup"\nbefore_s=1\nafter_s=1\n[[claim]]\nid="a"\nkind="speedup"\n'
            "before_s=1\nafter_s=1",
            "used twice",
        ),
        ("version=1\n[[claim", "not valid TOML"),
        ('version=1\n[[claim]]\nid="a"\nkind="capacity"\np=1\ncategory="ai"', "category must be one of"),
        ('version=1\n[[claim]]\nid="a"\nkind="speedup"\nbefore_s=2\nafter_s=1\ncost_change=-1', "above -1"),
        ('version=1\n[[claim]]\nid="a"\nkind="speedup"\nbefore_s=2\nafter_s=1\ndevices_after=0', "positive"),
        ('version=1\n[[claim]]\nid="a"\nkind="capacity"\np=1\nutilisation=0.5', "go together"),
        (
            'version=1\n[[claim]]\nid="a"\nkind="capacity"\np=1\nutilisation=1.5\nutilisation_of="cpu_time"',
            "fraction in",
        ),
        (
            'version=1\n[[claim]]\nid="a"\nkind="capacity"\np=1\nutilisation=0.5\nutilisation_of="vibes"',
            "utilisation_of must be one of",
        ),
    ],
)
def test_claim_file_errors(tmp_path, body, error):
    f = tmp_path / "c.toml"
    f.write_text(body)
    with pytest.raises(ClaimError, match=error):
        load_claims(f)


def test_shipped_claims_load():
    claims = load_claims("claims/public-claims.toml")
    assert {c.id for c in claims} == {"cq-general", "cq-capacity", "cq-supercomputing", "xj-to-cq", "west-dispatch"}


@pytest.mark.slow  # measures the CPU's peak (GEMMs and copies), then a run
def test_claim_and_peak_commands_end_to_end(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["peak", "--device", "cpu", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    peak = next(tmp_path.glob("peak-*.json"))
    doc = json.loads(peak.read_text())
    fp32 = next(g for g in doc["gemm"] if g["precision"] == "fp32")
    assert fp32["measured_tflops"] > 0 and doc["copy_gbs"] > 0
    fast = ["--min-duration", "0", "--min-iters", "2", "--warmup", "1", "--image-size", "160x96"]
    r = runner.invoke(app, ["run", "steel-defect-mobilenetv3", "--device", "cpu", "--out", str(tmp_path), *fast])
    assert r.exit_code == 0, r.output
    result = next(tmp_path.glob("2*.json"))
    r = runner.invoke(app, ["claim", "claims/public-claims.toml", "-r", str(result), "--peak", str(peak)])
    assert r.exit_code == 0, r.output
    out = " ".join(r.stdout.split())  # its fp32 result against the supercomputing claim, read at fp64 by convention:
    assert "50 P claimed → at most" in out and "read at fp32" in out
    assert "no measurement at fp64_tensor/fp64 (the conventional reading)" in out
    assert "measured by modelpower peak" not in out  # the arithmetic: --steps
    r = runner.invoke(app, ["claim", "claims/public-claims.toml", "-r", str(result), "--peak", str(peak), "--steps"])
    assert r.exit_code == 0 and "measured by modelpower peak" in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("version = 2")
    r = runner.invoke(app, ["claim", str(bad)])
    assert r.exit_code == 2 and "modelpower: error:" in r.stderr


def test_mfu_above_100_percent_cannot_bound_a_claim():
    pt = make_point(precision="fp16", mfu=1.2, mfu_precision="fp16", mfu_peak_tflops=100.0)
    v = check_capacity(cap(), [pt])
    assert "120% > 100%" in v.not_comparable[0][2] and "not measured" in v.verdict


def test_claim_takes_files_in_any_order(tmp_path):
    from harness.results.schema import write_result
    from tests.helpers import make_result

    res = tmp_path / "r.json"
    write_result(make_result([make_point(precision="fp16", mfu=0.3, mfu_precision="fp16", mfu_peak_tflops=989.4)]), res)
    r = CliRunner().invoke(app, ["claim", str(res), "claims/public-claims.toml"])
    assert r.exit_code == 0, r.output
    out = " ".join(r.stdout.split())
    assert "11,000 P claimed → at most 3,300 P-equivalent on this work (30.0% of nameplate" in out
    assert "P-equiv." in out and "3,300" in out  # the table


def test_costs_by_hand():
    """100 samples/s at 2 J/sample and 100 TFLOPS delivered, 1,000 J/PFLOP; electricity 0.10 per kWh,
    2.00 per device-hour."""
    from harness.verdicts.cost import Prices, row_costs

    row = {
        "kind": "vision",
        "throughput": 100.0,
        "joules_per_item": 2.0,
        "delivered_tflops": 100.0,
        "joules_per_pflop": 1000.0,
    }
    c = row_costs(row, Prices(0.10, 2.00))
    assert c["per_million_energy"] == pytest.approx(2e6 / 3.6e6 * 0.10)  # 0.0556: 2 MJ = 0.556 kWh
    assert c["per_million_device"] == pytest.approx(1e6 / 100 / 3600 * 2.00)  # 2.78 device-hours
    assert c["per_million"] == pytest.approx(c["per_million_energy"] + c["per_million_device"])
    assert c["per_pflop_hour_energy"] == pytest.approx(0.10)  # 3,600 PFLOP x 1,000 J = 1 kWh
    assert c["per_pflop_hour_device"] == pytest.approx(20.0)  # 0.1 PFLOPS -> 10 device-hours
    assert row_costs(row, Prices(0.10, 2.00), devices=8)["per_pflop_hour_device"] == pytest.approx(160.0)
    unmeasured = row_costs(row | {"joules_per_item": None, "joules_per_pflop": None}, Prices(0.10, None))
    assert unmeasured["per_million"] is None and unmeasured["per_pflop_hour"] is None
    assert row_costs(row | {"kind": "llm"}, Prices(0.10, 2.00))["per_pflop_hour"] is None
    with pytest.raises(ClaimError.__mro__[1], match="--electricity-price must be a finite price"):
        Prices(float("nan"), None)


def test_cost_in_claims_and_reports(tmp_path):
    pt = make_point(
        precision="fp16",
        mfu=0.3,
        mfu_precision="fp16",
        mfu_peak_tflops=989.4,
        joules_per_pflop=1000.0,
        delivered_tflops=100.0,
    )
    from harness.verdicts.cost import Prices

    v = check_capacity(cap(), [pt], Prices(0.10, 2.00))
    assert any(
        "a PFLOP-hour of this work costs 20.1 at electricity 0.1 per kWh, 2 per device-hour" in s for s in v.steps
    )
    from harness.results.schema import write_result
    from tests.helpers import make_result

    pt = make_point(throughput_sps=100.0, joules_per_sample=2.0, delivered_tflops=100.0, joules_per_pflop=1000.0)
    write_result(make_result([pt]), tmp_path / "r.json")
    r = CliRunner().invoke(
        app,
        [
            "report",
            str(tmp_path / "r.json"),
            "-o",
            str(tmp_path / "rep"),
            "--electricity-price",
            "0.1",
            "--device-hour-price",
            "2",
        ],
    )
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Cost of the measured work (electricity 0.1 per kWh, 2 per device-hour)" in md
    assert "| 0.05556 / 5.556 / 5.611 | 0.1 / 20 / 20.1 |" in md  # energy / device-time / total
    r = CliRunner().invoke(
        app, ["report", str(tmp_path / "r.json"), "-o", str(tmp_path / "rep1"), "--device-hour-price", "2"]
    )
    assert "| no price / 5.556 / 5.556 | no price / 20 / 20 |" in (tmp_path / "rep1" / "report.md").read_text()
    assert "Cost of the measured work" in (tmp_path / "rep" / "report.html").read_text()
    csv = (tmp_path / "rep" / "metrics.csv").read_text().splitlines()
    assert "cost_per_pflop_hour" in csv[0] and ",20.1," in csv[1]
    r = CliRunner().invoke(
        app, ["report", str(tmp_path / "r.json"), "-o", str(tmp_path / "rep2"), "--device-hour-price", "-1"]
    )
    assert r.exit_code == 2 and "--device-hour-price must be a finite price" in r.stderr


def test_speedup_with_devices_and_cost_by_hand():
    """3,600 s on 1 device -> 60 s on 8, cost -50%: 8 devices explain 8x of 60x (perfect scaling
    assumed, said so); each must be 7.5x faster; device-hours 1 -> 0.1333, so a device-hour after
    may cost up to 0.5 x 1 / 0.1333 = 3.75x one before."""
    from harness.verdicts.cost import Prices

    c = Claim(
        "s",
        "speedup",
        "",
        "",
        {"before_s": 3600, "after_s": 60, "devices_before": 1, "devices_after": 8, "cost_change": -0.5},
    )
    v = check_speedup(c, [], Prices(None, 2.0))
    assert any("assumed 1.0 (perfect scaling)" in s for s in v.steps)
    assert any("would take 450 s" in s and "7.5x faster as well" in s for s in v.steps)
    assert any("1 before, 8 x 60 s = 0.1333 after" in s for s in v.steps)
    assert any("at most 3.75x one before (2 -> 7.5 per device-hour)" in s for s in v.steps)
    assert "explain 8x of the 60x" in v.verdict and "at most 3.75x one before" in v.verdict
    # a measured scaling efficiency: 2 devices together 180/s, one alone 100/s -> 90%
    pts = [make_point(throughput_sps=100.0), make_point(throughput_sps=180.0, aggregate=True, world_size=2)]
    c2 = Claim("s", "speedup", "", "", {"before_s": 100, "after_s": 40, "devices_before": 1, "devices_after": 2})
    v = check_speedup(c2, pts)
    assert any("90% scaling efficiency" in s for s in v.steps)
    assert any("would take 55.6 s" in s and "1.39x faster as well" in s for s in v.steps)  # 100 / (2 x 0.9)


def test_best_published_beside_matching_points_only(tmp_path):
    """MLPerf v4.0's 88,714.3 samples/s for ResNet-50 on one H100 SXM: beside a resnet50-imagenet
    point on an H100 SXM, not beside another device or another workload."""
    from harness.machine.published import best_published

    assert best_published("resnet50-imagenet", "NVIDIA H100 80GB HBM3").value == 88714.3
    assert best_published("resnet50-imagenet", "NVIDIA A100-SXM4-80GB") is None  # another device
    assert best_published("steel-defect-resnet50", "NVIDIA H100 80GB HBM3") is None  # another workload
    h100 = dict(
        device_name="NVIDIA H100 80GB HBM3", precision="fp16", mfu=0.1, mfu_precision="fp16", mfu_peak_tflops=989.4
    )
    ours = make_point(model="resnet50-imagenet", throughput_sps=8871.43, **h100)  # 10% of the published figure
    other = make_point(model="steel-defect-resnet50", throughput_sps=9000.0, **h100)
    v = check_capacity(cap(), [ours, other])
    line = next(s for s in v.steps if s.startswith("resnet50-imagenet"))
    assert "ours is 10.0% of it" in line and "would deliver 11,000 P-equivalent" in line  # 11,000 x 0.1 / 0.1
    assert "best published" not in next(s for s in v.steps if s.startswith("steel-defect-resnet50"))
    assert "at most 1,100 P-equivalent" in v.verdict
    assert (
        "our best measured point gives 1,100 P-equivalent" in v.verdict and "deliver 11,000 P-equivalent" in v.verdict
    )
    assert "int8 run counted against the fp16 peak" in v.verdict
    from harness.results.schema import write_result
    from tests.helpers import make_result

    write_result(make_result([ours, other]), tmp_path / "r.json")
    r = CliRunner().invoke(app, ["report", str(tmp_path / "r.json"), "-o", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "10.0% of 88,714.3" in md and "none found" in md and "MLPerf Inference v4.0" in md


def test_published_llm_decode_figure_matches_batch_and_precision():
    """gpt-fast's Llama-2-7B on an A100-80GB: 104.9 tokens/s bf16 at batch 1 (155.58 int8)."""
    from harness.machine.published import best_published

    a100 = "NVIDIA A100-SXM4-80GB"
    assert best_published("llama2-7b", a100, 1, "bf16").value == 104.9
    assert best_published("llama2-7b", a100, 1, "int8").value == 155.58
    assert best_published("llama2-7b", a100, 16, "bf16") is None  # a batch-1 figure, not for batch 16
    assert best_published("llama2-7b", "NVIDIA H100 80GB HBM3", 1, "bf16") is None  # another device


def test_speedup_device_counts_go_together_and_aggregates_name_their_devices(tmp_path):
    """A torchrun aggregate is named "2 x <device>": the efficiency is still measured; device
    counts come in pairs of whole numbers; the efficiency applies to an increase only."""
    pts = [
        make_point(throughput_sps=100.0, device_name="AMD EPYC"),
        make_point(throughput_sps=180.0, aggregate=True, world_size=2, device_name="2 x AMD EPYC"),
    ]
    c = Claim("s", "speedup", "", "", {"before_s": 100, "after_s": 40, "devices_before": 1, "devices_after": 2})
    assert any("90% scaling efficiency" in s for s in check_speedup(c, pts).steps)
    same = Claim("s", "speedup", "", "", {"before_s": 3600, "after_s": 1800, "devices_before": 2, "devices_after": 2})
    v = check_speedup(same, pts)
    assert any("would take 3,600 s" in s for s in v.steps) and v.verdict.startswith("The change in device count")
    for body, error in [("devices_after=8", "go together"), ("devices_before=1.5\ndevices_after=2", "whole number")]:
        f = tmp_path / "c.toml"
        f.write_text(f'version=1\n[[claim]]\nid="a"\nkind="speedup"\nbefore_s=2\nafter_s=1\n{body}')
        with pytest.raises(ClaimError, match=error):
            load_claims(f)


def test_every_published_row_parses_names_a_spec_device_and_its_source():
    """Each row of harness/data/published.toml: a spec-table device, a positive figure, where it was read;
    MLPerf rows: round, submitter, system, division, and the per-accelerator value = system / accelerators;
    energy rows: their measurement scope."""
    import re

    from harness.machine.published import published_rows
    from harness.machine.specs import find_spec
    from models.llm.config import LLM_CONFIGS

    rows = published_rows()
    assert len(rows) >= 25
    for r in rows:
        assert find_spec(r.device) is not None, r.device
        assert r.value > 0 and r.metric in ("samples/s", "tokens/s", "decode tokens/s", "J/token"), r
        assert re.search(r"github\.com/[\w.-]+/[\w.-]+ \S", r.source), r.source  # a repository and a file in it
        if r.round.startswith("MLPerf"):
            assert r.submitter and r.system and r.division == "closed" and r.scenario == "offline", r
            assert r.system_value and r.accelerators >= 1
            per = r.system_value if r.metric == "J/token" else r.system_value / r.accelerators
            assert r.value == pytest.approx(per, rel=1e-3), r
        if r.metric == "J/token":
            assert r.scope in ("whole-system wall power (MLPerf Power)", "GPU board energy counter (Zeus)"), r
        for m in r.models:  # a model a row names is one modelpower runs
            assert m in LLM_CONFIGS or m in ("resnet50-imagenet", "torchvision:resnet50", "timm:resnet50"), m
    rounds = {r.round for r in rows}
    assert {
        "MLPerf Inference v5.0",
        "MLPerf Inference v5.1",
        "MLPerf Inference v6.0",
        "MLPerf Inference v6.1",
        "ML.ENERGY Benchmark v3.0",
    } <= rounds


def test_mlperf_llm_offline_rows_meet_batch_points_said_so(tmp_path):
    """An LLM point of an MLPerf workload meets the Offline figure of its device: ours is all output tokens/s
    at our batch, and a precision other than ours is said; the ML.ENERGY J/token sits beside ours."""
    from harness.machine.published import best_published, published_energy
    from harness.results.schema import write_result
    from harness.verdicts.report import Inputs, flat_rows
    from tests.helpers import make_llm_point, make_result

    h200 = "NVIDIA H200"
    pub = best_published("llama3.1-8b", h200, 64, "fp8")
    assert pub is not None and pub.batch is None and pub.metric == "tokens/s" and pub.value == 8254.6
    assert best_published("llama3.1-8b", h200, 64, "bf16") is None  # no bf16 Offline figure
    energy = published_energy("llama3.1-8b", "NVIDIA H100 80GB HBM3")
    assert energy and all(e.metric == "J/token" and e.scope for e in energy)
    pts = [
        make_llm_point(
            model="llama3.1-8b", device_name=h200, precision="bf16", batch_size=64, output_tokens_per_s=825.46
        ),  # 10% of HPE's 8,254.6 per H200 (v5.1, fp8)
        make_llm_point(
            model="llama3.1-8b",
            device_name="NVIDIA H100 80GB HBM3",
            precision="bf16",
            batch_size=64,
            joules_per_token=0.5,
        ),
    ]
    write_result(make_result(pts), tmp_path / "r.json")
    rows = flat_rows(Inputs(results=[(tmp_path / "r.json", make_result(pts))]))
    assert rows[0]["fraction_of_published"] == pytest.approx(0.1)
    assert rows[0]["published_source"].startswith("ours: batch 64 bf16, published: Offline fp8; 8,254.6 tokens/s")
    r = CliRunner().invoke(app, ["report", str(tmp_path / "r.json"), "-o", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Energy per output token beside published figures" in md and "ML.ENERGY Benchmark v3.0" in md
    assert "GPU board energy counter (Zeus)" in md and "| 0.5 (" in md and "10.0% of 8,254.6" in md
