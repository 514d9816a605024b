"""The timed runner on CPU: window rules, throughput definition, stage breakdown, output checks."""

import time

import pytest
import torch

import harness.vision.runner as runner
from harness.vision.images import ImageSource, synthetic_images
from harness.vision.runner import load_model, measure_point
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


def test_timed_window_excludes_warmup_and_meters_exactly_the_window():
    """The one window loop (vision ONNX files, LLM generations): warm-up calls untimed and before the
    meter starts, progress after every timed call, the meter stopped as the window closes."""
    from harness.measure.energy import Meter
    from harness.measure.window import Window, timed_window

    events = []

    class Spy(Meter):
        def start(self):
            events.append("start")
            super().start()

    def step(i):
        events.append(("step", i))
        return i * 10

    progress = lambda phase, elapsed, n: events.append((phase, n))  # noqa: E731
    run = timed_window(step, Window(2, 0.0, 3), Spy(), progress, "p")
    warmup = [("step", 0), ("step", 1)]
    timed = [("step", 0), ("p", 1), ("step", 1), ("p", 2), ("step", 2), ("p", 3)]
    assert events == [*warmup, "start", *timed]
    assert run.results == [0, 10, 20] and len(run.times) == 3 and run.seconds >= sum(run.times)
    assert run.reading.window_s == pytest.approx(run.seconds, abs=0.05)
    last = timed_window(step, Window(0, 0.0, 4), Meter(), keep=False)
    assert last.results == [30] and len(last.times) == 4


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
    from harness.kernelbench import peers

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
        r = CliRunner().invoke(
            app,
            [
                "run",
                "steel-defect-mobilenetv3",
                "-b",
                "2",
                "--device",
                "cpu",
                "--memory-format",
                fmt,
                "--min-duration",
                "0",
                "--min-iters",
                "2",
                "--warmup",
                "0",
                "--out",
                str(tmp_path / fmt),
            ],
        )
        assert r.exit_code == 0, r.output
        (p,) = _json.loads(next((tmp_path / fmt).glob("*.json")).read_text())["points"]
        outs[fmt] = p
    assert outs["auto"]["memory_format"] == "channels_last" and outs["contiguous"]["memory_format"] == "contiguous"
    assert outs["auto"]["agreement"]["passed"] and outs["auto"]["agreement"]["max_rel_err"] < 1e-4
    r = CliRunner().invoke(app, ["run", "steel-defect-mobilenetv3", "--memory-format", "nhwc", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown --memory-format 'nhwc'" in r.output


def test_memory_format_auto_rules():
    import torch

    from harness.vision.runner import LoadedModel, RunSettings, memory_format

    conv = LoadedModel(None, torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), {}, 0.0, 0, 0)
    mlp = LoadedModel(None, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)), {}, 0.0, 0, 0)
    onnx_file = LoadedModel(None, lambda x: x, {}, 0.0, 0, 0)
    cpu = torch.device("cpu")
    assert memory_format(conv, RunSettings(cpu)) == "channels_last"
    assert memory_format(conv, RunSettings(cpu, backend="onnxruntime")) == "contiguous"
    assert memory_format(mlp, RunSettings(cpu)) == "contiguous"
    assert memory_format(onnx_file, RunSettings(cpu)) == "contiguous"
    assert memory_format(mlp, RunSettings(cpu, memory_format="channels_last")) == "channels_last"


def test_upload_of_the_next_batch_is_issued_before_this_batch_blocks(images, fast_settings):
    """The overlap's ordering, with logging fakes for the copy stream and its events (no GPU):
    each batch's device steps wait for its own upload; the next batch's upload is issued (after its
    slot is free) before this batch's blocking copy back; the host waits for a slot's upload before
    refilling its pinned buffer."""
    from harness.measure.energy import Meter
    from harness.vision.uploads import Uploads

    log = []

    class Ev:
        def __init__(self):
            self.name = f"ev{len(log)}"

        def record(self, stream):
            log.append(("record", stream.name, self))

        def synchronize(self):
            log.append(("host_wait", self))

    class Stream:
        def __init__(self, name):
            self.name = name

        def wait_event(self, ev):
            log.append(("wait", self.name, ev))

    up = Uploads(torch.device("cpu"), stream=Stream("copy"), event=Ev, on_stream=None, compute=Stream("compute"))
    lm = load_model(get_preset("steel-defect-mobilenetv3"), fast_settings)
    pipe = runner.VisionPipeline(lm, 2, images, fast_settings, "numba")
    runner.prepare_checked(lm, pipe, fast_settings)
    steps = []
    for name, fn in pipe.steps:
        steps.append((name, lambda ctx, n=name, f=fn: (log.append((n, ctx["index"])), f(ctx))[1]))
    pipe.steps = steps
    fast_settings.warmup, fast_settings.min_iters = 0, 3
    lat = runner._pipelined_window(pipe, fast_settings, None, Meter(), up)[0]
    assert len(lat) == 3

    def at(entry):
        return log.index(entry)

    for i in range(3):
        slot = i % 2
        up_i = [k for k, e in enumerate(log) if e[0] == "record" and e[1] == "copy" and e[2] is up.up[slot]]
        assert at(("infer", i)) > at(("wait", "compute", up.up[slot]))  # waits for an upload of its slot
        assert any(k < at(("infer", i)) for k in up_i)
        assert at(("h2d", i + 1)) < at(("d2h", i))  # the next upload is issued before this batch blocks
    main = [e for e in log if e[0] not in ("pre", "host_wait")]  # the worker thread's entries interleave
    for k, e in enumerate(main):  # every upload first waits for its slot to be released
        if e[0] == "h2d":
            assert main[k - 1][:2] == ("wait", "copy") and main[k - 1][2] is up.free[e[1] % 2]
    worker = [e for e in log if e[0] in ("pre", "host_wait")]
    for k, e in enumerate(worker):  # a host step refills a pinned slot only after waiting for its last upload
        if e[0] == "pre":
            assert worker[k - 1] == ("host_wait", up.up[e[1] % 2])
