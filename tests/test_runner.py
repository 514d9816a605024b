"""The timed runner on CPU: window rules, throughput definition, stage breakdown, output checks."""

import time

import pytest
import torch

import harness.runner as runner
from harness.images import ImageSource, synthetic_images
from harness.runner import load_model, measure_point
from models import get_preset


@pytest.fixture(scope="module")
def images():
    return synthetic_images(4, 96, 160, seed=0)


@pytest.mark.parametrize("name", ["steel-defect-mobilenetv3", "pcb-defect-yolo", "steel-seg-lraspp"])
def test_measure_point_for_each_task(name, images, fast_settings):
    lm = load_model(get_preset(name), fast_settings)
    pt = measure_point(lm, 2, images, fast_settings)
    assert pt.iterations >= fast_settings.min_iters
    assert pt.samples == pt.iterations * 2
    assert pt.throughput_sps == pytest.approx(pt.samples / pt.window_s)
    assert pt.delivered_tflops == pytest.approx(pt.flops_per_sample * pt.throughput_sps / 1e12)
    assert set(pt.staged) == {"pre", "h2d", "infer", "d2h", "post"}
    assert all(s.count >= fast_settings.min_iters for s in pt.staged.values())
    assert pt.staged["infer"].mean_ms > 0 and pt.e2e.mean_ms > 0
    assert pt.output_check["nan_or_inf"] is False and pt.output_check["checked_batches"] == 3
    assert pt.weights["kind"] == "random-init" and pt.weights["seed"] == 0
    assert pt.load_s > 0 and pt.first_call_s > 0


def test_window_needs_both_duration_and_iterations(images, fast_settings):
    lm = load_model(get_preset("steel-defect-mobilenetv3"), fast_settings)
    fast_settings.min_iters = 1
    fast_settings.min_duration = 0.3
    t = time.perf_counter()
    pt = measure_point(lm, 1, images, fast_settings)
    assert pt.window_s >= 0.3 and pt.staged_window_s >= 0.3
    assert time.perf_counter() - t >= 0.6
    fast_settings.min_duration, fast_settings.min_iters = 0.0, 7
    pt = measure_point(lm, 1, images, fast_settings)
    assert pt.iterations == 7 and pt.staged["infer"].count == 7


def test_warmup_is_excluded(images, fast_settings, monkeypatch):
    """With warm-up 3 and 2 measured batches, the model runs 2 (agreement check: reference and
    backend, outside every timer) + 1 (first call) + 5 + 5 times."""
    lm = load_model(get_preset("steel-defect-mobilenetv3"), fast_settings)
    calls = []
    lm.model.register_forward_hook(lambda *a: calls.append(1))
    fast_settings.warmup, fast_settings.min_iters = 3, 2
    pt = measure_point(lm, 1, images, fast_settings)
    assert pt.iterations == 2 and pt.staged["infer"].count == 2
    assert len(calls) == 2 + 1 + 5 + 5


def test_nan_outputs_are_flagged(images, fast_settings):
    lm = load_model(get_preset("steel-defect-mobilenetv3"), fast_settings)
    with torch.no_grad():
        lm.model.classifier[-1].bias.fill_(float("nan"))
    pt = measure_point(lm, 1, images, fast_settings)
    assert pt.output_check["nan_or_inf"] and "nan_or_inf_outputs" in pt.flags


def test_rgb_folder_images_skip_channel_swap(fast_settings, monkeypatch):
    import numpy as np

    src = ImageSource([np.zeros((8, 8, 3), np.uint8)], bgr=False, description="t")
    seen = {}
    real = runner.letterbox_normalize

    def spy(*a, **k):
        seen["swap"] = k["bgr_to_rgb"]
        return real(*a, **k)

    monkeypatch.setattr(runner, "letterbox_normalize", spy)
    lm = load_model(get_preset("steel-defect-mobilenetv3"), fast_settings)
    measure_point(lm, 1, src, fast_settings)
    assert seen["swap"] is False


@pytest.mark.parametrize("preprocess", ["numba", "opencv", "torchvision"])
@pytest.mark.parametrize("name", ["steel-defect-mobilenetv3", "pcb-defect-yolo", "steel-seg-lraspp"])
def test_every_data_path_runs_every_task(name, preprocess, images, fast_settings):
    lm = load_model(get_preset(name), fast_settings)
    pt = measure_point(lm, 2, images, fast_settings, preprocess=preprocess)
    assert pt.preprocess == preprocess and pt.throughput_sps > 0
    assert list(pt.staged) == ["pre", "h2d", "infer", "d2h", "post"]
    assert not pt.output_check["nan_or_inf"]


def test_peer_path_uses_the_peers(images, fast_settings, monkeypatch):
    from harness import peers

    calls = []
    real = peers.opencv_letterbox
    monkeypatch.setattr(peers, "opencv_letterbox", lambda *a, **k: calls.append(1) or real(*a, **k))
    lm = load_model(get_preset("steel-defect-mobilenetv3"), fast_settings)
    measure_point(lm, 1, images, fast_settings, preprocess="opencv")
    assert calls


def test_unknown_preprocess_is_a_user_error(images, fast_settings):
    from harness.errors import UserError

    lm = load_model(get_preset("steel-defect-mobilenetv3"), fast_settings)
    with pytest.raises(UserError, match="unknown --preprocess"):
        measure_point(lm, 1, images, fast_settings, preprocess="pillow")


def test_channels_last_gives_the_contiguous_outputs_and_is_recorded(tmp_path):
    """auto picks channels_last for a convolution model on the torch backends; the outputs equal the
    NCHW run's and the point records the layout; ONNX Runtime stays contiguous."""
    import json as _json

    from typer.testing import CliRunner

    from harness.cli import app

    outs = {}
    for fmt in ("auto", "contiguous"):
        r = CliRunner().invoke(app, ["run", "steel-defect-mobilenetv3", "-b", "2", "--device", "cpu", "--memory-format",
                                     fmt, "--min-duration", "0", "--min-iters", "2", "--warmup", "0",
                                     "--out", str(tmp_path / fmt)])  # fmt: skip
        assert r.exit_code == 0, r.output
        (p,) = _json.loads(next((tmp_path / fmt).glob("*.json")).read_text())["points"]
        outs[fmt] = p
    assert outs["auto"]["memory_format"] == "channels_last" and outs["contiguous"]["memory_format"] == "contiguous"
    assert outs["auto"]["agreement"]["passed"] and outs["auto"]["agreement"]["max_rel_err"] < 1e-4
    r = CliRunner().invoke(app, ["run", "steel-defect-mobilenetv3", "--memory-format", "nhwc", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown --memory-format 'nhwc'" in r.output


def test_memory_format_auto_rules():
    import torch

    from harness.runner import LoadedModel, RunSettings, memory_format

    conv = LoadedModel(None, torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), {}, 0.0, 0, 0)
    mlp = LoadedModel(None, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)), {}, 0.0, 0, 0)
    onnx_file = LoadedModel(None, lambda x: x, {}, 0.0, 0, 0)
    cpu = torch.device("cpu")
    assert memory_format(conv, RunSettings(cpu)) == "channels_last"
    assert memory_format(conv, RunSettings(cpu, backend="onnxruntime")) == "contiguous"
    assert memory_format(mlp, RunSettings(cpu)) == "contiguous"
    assert memory_format(onnx_file, RunSettings(cpu)) == "contiguous"
    assert memory_format(mlp, RunSettings(cpu, memory_format="channels_last")) == "channels_last"
