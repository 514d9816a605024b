"""The CLI as a user meets it: commands, result files, and one clear line + exit 2 on bad input."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from harness.results.schema import read_result
from models import build_model, get_preset

WINDOWS = ["--min-duration", "0", "--min-iters", "2", "--warmup", "1"]
FAST = [*WINDOWS, "--image-size", "160x96", "--num-images", "2"]


def assert_user_error(result, text):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("modelpower: error:"), result.stderr
    assert text in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_devices_and_models_commands(invoke):
    r = invoke("devices")
    assert r.exit_code == 0 and "CPU" in r.stdout
    r = invoke("devices", "--json")
    assert json.loads(r.stdout)["cpu"]["logical_cores"] >= 1
    r = invoke("models")
    assert r.exit_code == 0 and "pcb-defect-yolo" in r.stdout and "8.18" in r.stdout
    r = invoke("models", "steel-*")
    assert "pcb-defect-yolo" not in r.stdout
    assert_user_error(invoke("models", "nothing-*"), "no preset matches")


@pytest.mark.slow  # three presets at two batch sizes, end to end
def test_run_writes_valid_results_for_all_three_tasks(invoke, tmp_path):
    r = invoke(
        "run",
        "steel-defect-mobilenetv3",
        "pcb-defect-yolo",
        "steel-seg-lraspp",
        "-b",
        "1,2",
        "--device",
        "cpu",
        "--out",
        tmp_path,
        *FAST,
    )
    assert r.exit_code == 0, r.output
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    res = read_result(files[0])
    assert res.status == "complete" and len(res.points) == 6
    assert {p.task for p in res.points} == {"classify", "detect", "segment"}
    for p in res.points:
        assert p.throughput_sps > 0 and p.delivered_tflops > 0 and p.flops_per_sample > 0
        assert p.e2e.p99_ms >= p.e2e.p50_ms > 0 and p.staged["post"].count >= 2
    prov = res.provenance
    assert prov["versions"]["torch"] and prov["machine"]["cpu"]["model"]
    assert res.config["seed"] == 0 and res.started_at and res.ended_at
    assert "samples/s" in r.stdout and "auto" not in r.stderr


def test_interrupted_run_keeps_finished_points(invoke, tmp_path, monkeypatch):
    import harness.vision.runner as hr

    real = hr.measure_point
    calls = []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(hr, "measure_point", flaky)
    r = invoke("run", "steel-defect-mobilenetv3", "-b", "1,2", "--device", "cpu", "--out", tmp_path, *FAST)
    assert r.exit_code == 130
    res = read_result(next(tmp_path.glob("*.json")))
    assert res.status == "incomplete" and len(res.points) == 1 and res.points[0].batch_size == 1
    assert "interrupted" in res.notes[0]


def test_unknown_model_suggests(invoke, tmp_path):
    assert_user_error(invoke("run", "pcb-defect-yol", "--out", tmp_path), "did you mean pcb-defect-yolo")


@pytest.mark.parametrize("bs,text", [("0", "got 0"), ("-3", "got -3"), ("abc", "'abc'"), ("1,x", "'x'")])
def test_bad_batch_size(invoke, bs, text, tmp_path):
    assert_user_error(invoke("run", "steel-defect-mobilenetv3", "-b", bs, "--out", tmp_path), text)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu(invoke, tmp_path):
    r = invoke("run", "steel-defect-mobilenetv3", "--device", "cuda", "--out", tmp_path)
    assert_user_error(r, "no CUDA GPU is visible")


def test_auto_says_which_device(invoke, tmp_path):
    r = invoke("run", "steel-defect-mobilenetv3", "--out", tmp_path, *FAST)
    assert r.exit_code == 0 and "auto picked" in r.stderr


def test_bad_precision_and_window(invoke, tmp_path):
    assert_user_error(
        invoke("run", "steel-defect-mobilenetv3", "--precision", "fp8", "--out", tmp_path), "unknown precision"
    )
    assert_user_error(
        invoke("run", "steel-defect-mobilenetv3", "--min-iters", "0", "--out", tmp_path),
        "--min-iters must be a finite number >= 1",
    )


def test_unwritable_out_dir(invoke, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert_user_error(invoke("run", "steel-defect-mobilenetv3", "--out", blocker / "sub"), "cannot write results to")


def test_weights_missing_corrupt_mismatched_and_good(invoke, tmp_path):
    name = "steel-defect-mobilenetv3"
    out = tmp_path / "out"
    assert_user_error(invoke("run", name, "--weights", tmp_path / "nope.pt", "--out", out), "weights file not found")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x04garbage")
    assert_user_error(invoke("run", name, "--weights", corrupt, "--out", out), f"cannot read weights file {corrupt}")
    corrupt_st = tmp_path / "corrupt.safetensors"
    corrupt_st.write_bytes(b"\x00\x01")
    assert_user_error(invoke("run", name, "--weights", corrupt_st, "--out", out), "cannot read weights file")
    other, _ = build_model(get_preset("grid-insulator-efficientnet"))
    wrong = tmp_path / "wrong.pt"
    torch.save(other.state_dict(), wrong)
    assert_user_error(
        invoke("run", name, "--weights", wrong, "--out", out),
        "does not match model steel-defect-mobilenetv3: key 'features.0.0.weight'",
    )
    same_arch_wrong_classes, _ = build_model(get_preset("resnet50-imagenet"))
    wrong_fc = tmp_path / "fc.safetensors"
    save_file(same_arch_wrong_classes.state_dict(), str(wrong_fc))
    r = invoke("run", "steel-defect-resnet50", "--weights", wrong_fc, "--out", out)
    assert_user_error(r, "key 'fc.weight' has shape [1000, 2048] in the file, [6, 2048] in the model")
    good_model, _ = build_model(get_preset(name), seed=7)
    good = tmp_path / "good.safetensors"
    save_file(good_model.state_dict(), str(good))
    r = invoke("run", name, "--weights", good, "--device", "cpu", "--out", out, *FAST)
    assert r.exit_code == 0, r.output
    res = read_result(next(out.glob("*.json")))
    assert res.points[0].weights["kind"] == "file" and len(res.points[0].weights["sha256"]) == 64


def test_weights_never_unpickle_objects(invoke, tmp_path):
    """A torch file holding an arbitrary object is refused (weights_only=True), not executed."""
    evil = tmp_path / "evil.pt"
    torch.save({"x": _Boom()}, evil)
    r = invoke("run", "steel-defect-mobilenetv3", "--weights", evil, "--out", tmp_path)
    assert_user_error(r, "holds Python objects or code")
    assert "weights_only=False" not in r.output  # never suggest unpickling it


class _Boom:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_image_folder(invoke, tmp_path):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.full((50, 70, 3), 99, np.uint8)).save(folder / "a.png")
    (folder / "b.jpg").write_bytes(b"not a jpeg")
    r = invoke("run", "pcb-defect-yolo", "--images", folder, "--device", "cpu", "--out", tmp_path / "o", *WINDOWS)
    assert_user_error(r, "cannot decode image")
    (folder / "b.jpg").unlink()
    r = invoke("run", "pcb-defect-yolo", "--images", folder, "--device", "cpu", "--out", tmp_path / "o", *WINDOWS)
    assert r.exit_code == 0, r.output
    assert "1 files from" in read_result(next((tmp_path / "o").glob("*.json"))).points[0].input_source
    assert_user_error(
        invoke("run", "pcb-defect-yolo", "--images", tmp_path / "none", "--out", tmp_path / "o"),
        "image folder not found",
    )


def test_command_line_loads_without_torch_or_numba():
    """`modelpower --help` and every command's parsing load neither torch nor numba (seconds each):
    the commands import what they run inside themselves (harness/cli/__init__.py)."""
    code = "import sys, harness.cli; print(sorted({'torch', 'numba', 'onnx'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
