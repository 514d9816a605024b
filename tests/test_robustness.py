"""Bad input, as a user or an attacker gives it: one line and exit 2, or a recorded point; never a
traceback, a hang, an out-of-memory kill or a silently ignored option. Signals end a run as
Ctrl-C does. Output never carries markup or escape sequences from files."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.results.schema import read_result, strict_json
from tests.helpers import assert_one_line

PRESET = "steel-defect-mobilenetv3"
WINDOWS = ["--device", "cpu", "--min-duration", "0", "--min-iters", "2", "--warmup", "1"]
FAST = [*WINDOWS, "--image-size", "96x64", "--num-images", "1"]
LLM = [
    "llm-tiny",
    "--device",
    "cpu",
    "--prompt-len",
    "8",
    "--output-len",
    "4",
    "--min-duration",
    "0",
    "--min-iters",
    "1",
]


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--min-duration", "nan"], "--min-duration must be a finite number"),
        (["--min-duration", "inf"], "--min-duration must be a finite number"),
        (["--assume-watts", "inf"], "--assume-watts must be a finite number > 0"),
        (["--seed", "-1"], "--seed must be a finite number >= 0"),
        (["--warmup", "-3"], "--warmup must be"),
        (["--warmup", "abc"], "Invalid value for '--warmup'"),
        (["--no-such-flag"], "No such option"),
        (["--num-images", "0"], "--num-images must be"),
        (["--num-images", "100000", "--image-size", "4000x3000"], "generated 4000x3000 frames needs about"),
        (["--scenario", "server", "--target-qps", "1e9", "--min-duration", "5"], "LoadGen's schedule of"),
        (["--scenario", "server", "--target-qps", "nan"], "--target-qps must be a finite number > 0"),
        (["--input-shape", "1x3x32x32"], "--input-shape applies to .onnx files"),
        (["--nnodes", "2"], "add --nproc-per-node"),
        (["--compile-mode", "max-autotune"], "--compile-mode applies to --backend torch-compile"),
        (["--spec", "harness/data/accelerators.toml"], "--spec rows are GPU nameplates"),
        (["--nproc-per-node", "2", "--min-iters", "0"], "--min-iters must be"),
        (["--nproc-per-node", "2", "--device", "cuda:1"], "with --nproc-per-node"),
    ],
)
def test_bad_run_options_are_one_line(invoke, tmp_path, args, text):
    base = WINDOWS if any(a in args for a in ("--image-size", "--num-images")) else FAST
    assert_one_line(invoke("run", PRESET, *base, *args, "--out", tmp_path), text)
    assert not list(tmp_path.glob("*.json")), "a refused run writes no result"


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--output-len", "0"], "output length must be a positive integer"),
        (["--top-p", "0"], "--top-p must be a finite number > 0 and <= 1"),
        (["--temperature", "nan"], "--temperature must be a finite number"),
        (["--top-k", "-1"], "--top-k must be"),
        (["--seed", "-1"], "--seed must be"),
        (["--precision", "fp16"], "fp16 on the CPU"),
    ],
)
def test_bad_llm_options_are_one_line(invoke, tmp_path, args, text):
    assert_one_line(invoke("run-llm", *LLM, *args, "--out", tmp_path), text)


def test_onnx_options_that_do_not_apply(invoke, tmp_path):
    import torch

    f = tmp_path / "m.onnx"
    torch.onnx.export(
        torch.nn.Linear(4, 2),
        (torch.zeros(1, 4),),
        str(f),
        input_names=["x"],
        dynamic_axes={"x": {0: "batch"}},
        dynamo=False,
    )
    for args, text in [
        (["--backend", "torch-compile"], "ONNX files run through one engine, onnxruntime (the default) or openvino"),
        (["--backend", "onnxruntime,openvino"], "ONNX files run through one engine"),
        (["-b", "1,4", "--input-shape", "2x4"], "-b gives the batch: --input-shape '2x4' should give the other axes"),
        (["--images", tmp_path], "--images applies to presets and to ONNX files run with --task"),
        (["--mean", "0"], "--mean applies to ONNX files run with --task"),
        (["--task", "classify", "--input-shape", "1x4"], "with --task the input is frames"),
        (["--task", "classify"], "--task expects an image input [N, 3, H, W]"),
        (["--task", "detect", "--det-format", "yolo9"], "expects an image input"),
        (["--precision", "fp16"], "--precision applies to presets"),
        (["--input-shape", "10000000000x4"], "needs about"),
    ]:
        assert_one_line(invoke("run", f, "--device", "cpu", *args, "--out", tmp_path), text)


def test_a_batch_too_big_is_a_recorded_point_and_the_sweep_goes_on(invoke, tmp_path):
    r = invoke("run", PRESET, *FAST, "-b", "1,100000000", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    res = read_result(next(tmp_path.glob("*.json")))
    assert res.status == "complete" and [p.batch_size for p in res.points] == [1]
    (f,) = res.failed
    assert f["kind"] == "skipped" and f["batch_size"] == 100000000 and "would not fit (estimated" in f["detail"]
    assert "not measured:" in r.stdout


def test_llm_point_too_big_for_memory_is_skipped_not_a_kill(invoke, tmp_path):
    r = invoke("run-llm", *LLM, "-b", "1,50000000", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    pts = read_result(next(tmp_path.glob("*.json"))).points
    assert [(p.batch_size, p.status) for p in pts] == [(1, "ok"), (50000000, "skipped")]
    assert pts[1].detail.startswith("would not fit (estimated")


def test_an_llm_run_whose_every_point_is_skipped_measured_nothing(invoke, tmp_path):
    """Skipped points (estimated not to fit) are recorded, named with their estimate, and do not
    count as measured: the run exits 3. The report's caveat says skipped, not out of memory."""
    r = invoke("run-llm", *LLM, "-b", "50000000", "--out", tmp_path)
    assert r.exit_code == 3 and "no point could be measured" in r.stderr, r.output
    path = next(tmp_path.glob("*.json"))
    (p,) = read_result(path).points
    assert p.status == "skipped" and p.flags == ["skipped"] and p.ttft is None and p.peak_memory_gib is None
    assert "would not fit (estimated: needs about" in r.stdout and "of host memory" in p.detail
    rep = invoke("report", path, "-o", tmp_path / "rep")
    assert rep.exit_code == 0, rep.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "skipped, not run: estimated not to fit" in md and "ran out of memory" not in md


def test_written_json_is_strict_with_a_reason_for_each_null():
    text = strict_json({"a": float("inf"), "b": [1.0, float("nan")], "notes": []})
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard token {c}"))
    assert doc["a"] is None and doc["b"] == [1.0, None]
    assert "a, b[1]" in doc["notes"][-1]


def test_untrusted_text_is_printed_plainly(invoke, tmp_path):
    """A model name with rich markup and an escape sequence, from a crafted result file."""
    r = invoke("run", PRESET, *FAST, "--out", tmp_path)
    assert r.exit_code == 0, r.output
    f = next(tmp_path.glob("*.json"))
    doc = json.loads(f.read_text())
    doc["points"][0]["model"] = "[/b][link=http://evil]x[/link]\x1b[2J=HYPERLINK(1)"
    f.write_text(json.dumps(doc))
    r = invoke("compare", f, f)
    assert r.exit_code == 0, r.output
    assert "[/b][link=http://evil]x[/link]" in r.stdout and "\x1b[2J" not in r.stdout
    r = invoke("report", f, "-o", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    csv_text = (tmp_path / "rep" / "metrics.csv").read_text()
    assert "'[/b]" not in csv_text and ",=HYPERLINK" not in csv_text
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "\x1b" not in md


def test_markdown_report_escapes_html(invoke, tmp_path):
    r = invoke("run", PRESET, *FAST, "--out", tmp_path)
    f = next(tmp_path.glob("*.json"))
    doc = json.loads(f.read_text())
    doc["points"][0]["model"] = "<img src=x onerror=alert(1)>|pipe"
    f.write_text(json.dumps(doc))
    r = invoke("report", f, "-o", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "<img" not in md and "&lt;img src=x onerror=alert(1)&gt;\\|pipe" in md


def _wait_for_points(folder, n: int, proc, timeout: float = 120):
    t = time.time()
    while time.time() - t < timeout and proc.poll() is None:
        for f in folder.glob("*.json"):
            try:
                if len(json.loads(f.read_text())["points"]) >= n:
                    return f
            except (ValueError, KeyError):
                pass
        time.sleep(0.2)
    pytest.fail("the run wrote no point in time")


@pytest.mark.slow  # a fresh `python -m harness run` process per signal, one second or more a point
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_signals_keep_finished_points(tmp_path, sig, code):
    args = [
        sys.executable,
        "-m",
        "harness",
        "run",
        PRESET,
        *FAST,
        "--min-duration",
        "1",
        "-b",
        "1,2,3,4,5,6",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    f = _wait_for_points(tmp_path, 1, proc)
    proc.send_signal(sig)
    if sig == signal.SIGINT:
        time.sleep(0.05)
        proc.send_signal(sig)  # a second Ctrl-C must not print an atexit traceback
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err, err
    res = read_result(f)
    assert res.status == "incomplete" and 1 <= len(res.points) < 6 and "interrupted" in res.notes[-1]


# ---------------------------------------------------------------- found by an adversarial tester
def test_files_that_never_end_or_block_are_refused(invoke, tmp_path):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert_one_line(invoke("compare", fifo, fifo), "not a regular file")
    assert_one_line(invoke("report", "/dev/zero", "-o", tmp_path / "rep"), "not a regular file")


def test_deeply_nested_toml_is_one_line(invoke, tmp_path):
    deep = tmp_path / "deep.toml"
    deep.write_text("version = 1\nx = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert_one_line(invoke("claim", deep), "nested too deeply")
    assert_one_line(invoke("claim", "claims/public-claims.toml", "--spec", deep), "nested too deeply")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-5.0", "1e400"])
def test_results_with_numbers_no_run_can_make_are_refused(invoke, tmp_path, value):
    r = invoke("run", PRESET, *FAST, "--out", tmp_path)
    f = next(tmp_path.glob("*.json"))
    f.write_text(f.read_text().replace('"throughput_sps": ', f'"throughput_sps": {value}, "_was": ', 1))
    assert_one_line(invoke("compare", f, f), "throughput_sps")
    r = invoke("report", f, "-o", tmp_path / "rep")
    assert r.exit_code == 2 and "Traceback" not in r.output


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--min-duration", "1e300"], "--min-duration must be a finite number >= 0 and <= 86400"),
        (["--loadgen-samples", "10"], "apply to LoadGen runs"),
        (["--scenario", "offline", "--target-qps", "5"], "apply to --scenario server"),
    ],
)
def test_more_options_that_do_not_apply(invoke, tmp_path, args, text):
    assert_one_line(invoke("run", PRESET, *FAST, *args, "--out", tmp_path), text)


def test_sampling_options_need_a_temperature(invoke, tmp_path):
    assert_one_line(invoke("run-llm", *LLM, "--top-k", "5", "--out", tmp_path), "add --temperature")


def test_when_no_point_fits_the_run_fails(invoke, tmp_path):
    r = invoke("run", PRESET, *FAST, "-b", "100000000", "--out", tmp_path)
    assert r.exit_code == 3 and "no point could be measured" in r.stderr, r.output


def test_nan_weights_give_invalid_tokens_not_a_crash(invoke, tmp_path):
    import torch

    from models.llm.config import LLMConfig
    from tests.helpers import write_checkpoint

    cfg = LLMConfig("t", 256, 32, 1, 4, 2, 64, 64)
    write_checkpoint(tmp_path / "ck", cfg, "LlamaForCausalLM", shards=1)
    from safetensors.torch import load_file, save_file

    (shard,) = (tmp_path / "ck").glob("*.safetensors")
    state = load_file(str(shard))
    state = {k: torch.full_like(v, float("nan")) for k, v in state.items()}
    save_file(state, str(shard))
    r = invoke(
        "run-llm",
        tmp_path / "ck",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--prompt-len",
        "4",
        "--output-len",
        "3",
        "--min-duration",
        "0",
        "--min-iters",
        "1",
        "--out",
        tmp_path / "o",
    )
    assert r.exit_code == 0, r.output
    (p,) = read_result(next((tmp_path / "o").glob("*.json"))).points
    assert "invalid_tokens" in p.flags


def test_control_characters_never_reach_csv_or_html(invoke, tmp_path):
    r = invoke("run", PRESET, *FAST, "--out", tmp_path)
    f = next(tmp_path.glob("*.json"))
    doc = json.loads(f.read_text())
    doc["points"][0]["backend"] = "evil\x1b[2J\x9b\x07"
    f.write_text(json.dumps(doc))
    r = invoke("report", f, "-o", tmp_path / "rep", "--title", "t\x1b[31m")
    assert r.exit_code == 0, r.output
    for name in ("metrics.csv", "report.html", "report.md"):
        text = (tmp_path / "rep" / name).read_text()
        assert not any(c in text for c in "\x1b\x9b\x07"), name


def test_a_peak_file_whose_gemm_is_not_a_list_is_one_line(invoke, tmp_path):
    f = tmp_path / "peak.json"
    f.write_text(
        '{"kind": "modelpower-peak", "version": 1, "device": "cpu", "device_name": "CPU", '
        '"nameplate_source": "x", "copy_gbs": 10.0, "copy_nameplate_gbs": null, "copy_ratio": null, '
        '"gemm": NaN, "provenance": {}}'
    )
    assert_one_line(invoke("claim", "claims/public-claims.toml", "--peak", f), "gemm")


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["run", PRESET, "--backend", "torch,,"], "--backend"),
        (["run-llm", "llm-tiny", "--engine", "modelpower,"], "--engine"),
        (["run", PRESET, "-b", "1,,8"], "batch size"),
        (["serve-bench", "http://127.0.0.1:9", "--model", "m", "--request-rate", "2,"], "--request-rate"),
    ],
)
def test_empty_list_items_are_refused(invoke, tmp_path, command, flag):
    r = invoke(*command, "--out", tmp_path)
    assert r.exit_code == 2 and flag in r.stderr and "empty item" in r.stderr, r.output


def test_onnx_graphs_without_a_feedable_input_are_refused(invoke, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    const = helper.make_node("Constant", [], ["y"], value=helper.make_tensor("c", TensorProto.FLOAT, [1], [1.0]))
    none = helper.make_model(helper.make_graph([const], "g", [], [helper.make_tensor_value_info("y", 1, [1])]))
    onnx.save(none, tmp_path / "none.onnx")
    scalar_in = helper.make_tensor_value_info("x", TensorProto.FLOAT, [])
    ident = helper.make_node("Identity", ["x"], ["y"])
    out = helper.make_tensor_value_info("y", 1, [])
    onnx.save(helper.make_model(helper.make_graph([ident], "g", [scalar_in], [out])), tmp_path / "scalar.onnx")
    image = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])
    ident_out = helper.make_tensor_value_info("y", 1, ["n", 3, 8, 8])
    onnx.save(helper.make_model(helper.make_graph([ident], "g", [image], [ident_out])), tmp_path / "id.onnx")
    r = invoke("run", tmp_path / "id.onnx", "--input-shape", "0x3x8x8", "--out", tmp_path)
    assert_one_line(r, "every axis must be at least 1")
    assert_one_line(invoke("run", tmp_path / "none.onnx", "--out", tmp_path), "declares no inputs")
    assert_one_line(invoke("run", tmp_path / "scalar.onnx", "--out", tmp_path), "every input is a scalar (rank 0)")


def test_messages_say_what_is_wrong(invoke, tmp_path):
    import json

    r = invoke("run", PRESET, *FAST, "--out", tmp_path / "ok")
    assert r.exit_code == 0, r.output
    doc = json.loads(next((tmp_path / "ok").glob("*.json")).read_text())
    doc["schema_version"] = "1"
    bad = tmp_path / "v.json"
    bad.write_text(json.dumps(doc))
    assert_one_line(invoke("compare", bad, bad), "schema_version must be a whole number")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert_one_line(invoke("run", PRESET, *FAST, "--out", tmp_path / "dangling"), "symbolic link")


def test_a_partial_worker_environment_is_one_line(invoke, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPOWER_WORKER", "1")
    monkeypatch.setenv("RANK", "0")
    assert_one_line(invoke("run", PRESET, *FAST, "--out", tmp_path), "WORLD_SIZE")


def test_weights_with_keys_that_are_not_names_are_one_line(invoke, tmp_path):
    import torch

    f = tmp_path / "w.pt"
    torch.save({0: torch.zeros(2), "b": torch.zeros(1)}, f)
    assert_one_line(invoke("run", PRESET, *FAST, "--weights", f, "--out", tmp_path), "not a parameter name")


def test_random_onnx_inputs_are_drawn_in_their_own_dtype():
    """The memory check counts what is allocated: no float64 draw behind a float32 or int input."""
    import numpy as np

    from harness.vision.onnx_model import input_bytes, random_inputs

    shapes = {"a": (2, 3), "b": (4,)}
    for dtype, itemsize in (("float32", 4), ("int64", 8), ("uint8", 1)):
        x = random_inputs(shapes, dtype, 0)
        assert x["a"].dtype == np.dtype(dtype) and input_bytes(shapes, dtype) == 10 * itemsize
    assert random_inputs(shapes, "float16", 0)["a"].dtype == np.float16
    assert input_bytes(shapes, "float16") == 10 * 2 + 6 * 4  # the largest input's float32 draw


def test_a_run_whose_last_write_fails_is_not_left_running(tmp_path, monkeypatch):
    """A full disk after the first write (the real write_atomic, whose os.replace fails): the file
    keeps what it had and says "incomplete", in place; the run stops with one line."""
    import errno
    import os

    from harness.errors import UserError
    from harness.results import schema
    from harness.results.session import LocalSink, ResultSession

    real, calls = os.replace, []

    def fill_up(src, dst):
        calls.append(dst)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", fill_up)
    sink = LocalSink(tmp_path)
    with pytest.raises(UserError, match="No space left"), ResultSession({"model": "x"}, sink):
        pass
    monkeypatch.setattr(os, "replace", real)
    result = schema.read_result(sink.path)
    assert result.status == "incomplete" and len(calls) == 2


def test_memory_checks_take_the_process_limit_into_account(monkeypatch):
    import resource

    import torch

    from harness.measure import memory

    monkeypatch.setattr(resource, "getrlimit", lambda which: (2**30 + 4096 * 10**6, resource.RLIM_INFINITY))
    monkeypatch.setattr(resource, "getpagesize", lambda: 4096)
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 2**40)
    monkeypatch.setattr(memory, "_cgroup_left", lambda: None)
    real_open = open

    def statm(path, *a, **k):  # a process of 10^6 pages (4.1 GB) under a limit 1 GiB above that
        if str(path) == "/proc/self/statm":
            import io

            return io.StringIO("1000000 0 0 0 0 0 0")
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", statm)
    assert memory.host_limit() == (2**30, "is left under ulimit -v")
    assert "1.0 GiB is left under ulimit -v" in memory.fits(2**30, 0, torch.device("cpu"))


def test_rss_peak_is_each_windows_own_not_the_process_lifetime_peak():
    """A fake RSS source: the first window peaks at 500, the second reads 200 throughout; the second
    window's peak is 200 (a lifetime peak, ru_maxrss, would still say 500)."""
    from harness.measure.memory import RssPeak

    values = iter([100, 500, 150])
    rss = RssPeak(period=0.005, read=lambda: next(values, None) or 200)
    with rss:
        time.sleep(0.05)  # the thread reads 500 and 150, then 200s
    assert rss.peak == 500 and rss.samples >= 4
    values = iter([])
    with rss:
        time.sleep(0.02)
    assert rss.peak == 200 and "every 5 ms over the point's timed window" in rss.scope
    unreadable = RssPeak(read=lambda: None)
    with unreadable:
        pass
    assert unreadable.peak is None and unreadable.samples == 0


def test_rss_peak_follows_a_real_allocation_up_and_down():
    """This process's RSS from /proc/self/statm: a window holding 256 MiB (touched) reads at least
    that much above a window after it is freed (numpy returns arrays that large to the OS)."""
    import numpy as np

    from harness.measure.memory import RssPeak, process_rss_bytes

    assert process_rss_bytes() > 0
    rss = RssPeak()
    with rss:
        big = np.ones(256 << 20, np.uint8)  # written: resident
        time.sleep(0.1)
        del big
    with_big = rss.peak
    with rss:
        time.sleep(0.1)
    assert rss.peak < with_big - (200 << 20), (with_big, rss.peak)


@pytest.mark.slow
def test_a_memory_limit_too_low_for_torch_is_one_line(tmp_path):
    import subprocess
    import sys

    code = "ulimit -v 1000000; exec " + f"{sys.executable} -m harness run-llm llm-tiny --device cpu --out {tmp_path}"
    r = subprocess.run(["bash", "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not enough memory" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
