"""Bring your own vision model: ONNX files in our pipeline (--task), -b sweeps on a dynamic batch axis,
timm and torchvision classifiers by name, and the random-init detector's workload."""

import warnings

import numpy as np
import pytest
import torch

from harness.results.schema import read_result
from tests.helpers import assert_one_line

FAST = ["--device", "cpu", "--min-duration", "0", "--min-iters", "2", "--warmup", "1"]
FRAMES = ["--image-size", "160x96", "--num-images", "2"]


class TinyYolo(torch.nn.Module):
    """The YOLOv8/YOLO11 export layout: [N, 4 + C, A], (cx, cy, w, h) in input pixels, sigmoid scores."""

    def __init__(self, classes: int = 3, stride: int = 8):
        super().__init__()
        self.stride = stride
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, 2, 1),
            torch.nn.SiLU(),
            torch.nn.Conv2d(8, 16, 3, 2, 1),
            torch.nn.SiLU(),
            torch.nn.Conv2d(16, 16, 3, 2, 1),
            torch.nn.SiLU(),
        )
        self.head = torch.nn.Conv2d(16, 4 + classes, 1)

    def forward(self, x):
        y = self.head(self.body(x))
        _, _, h, w = y.shape
        gy, gx = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype), indexing="ij")
        cx = (gx + 0.5 + torch.tanh(y[:, 0])) * self.stride
        cy = (gy + 0.5 + torch.tanh(y[:, 1])) * self.stride
        wh = torch.exp(y[:, 2:4].clamp(-4, 4)) * self.stride * 2
        return torch.cat([cx[:, None], cy[:, None], wh, torch.sigmoid(8 * y[:, 4:])], 1).flatten(2)


class TinyClassifier(torch.nn.Module):
    def __init__(self, classes: int = 5):
        super().__init__()
        self.f = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, 2, 1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(8, classes),
        )

    def forward(self, x):
        return self.f(x)


class ChannelMeans(torch.nn.Module):
    """Logits = the mean of each input channel: shows which channel order the model was given."""

    def forward(self, x):
        return x.mean((2, 3))


class TinySegmenter(torch.nn.Module):
    def __init__(self, classes: int = 4):
        super().__init__()
        self.f = torch.nn.Conv2d(3, classes, 3, 1, 1)

    def forward(self, x):
        return self.f(x)


DYNAMIC = {"images": {0: "batch"}, "output0": {0: "batch"}}


def export(model, path, shape, dynamic_batch=True):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (torch.randn(*shape),),
            str(path),
            input_names=["images"],
            output_names=["output0"],
            opset_version=17,
            dynamo=False,
            dynamic_axes=DYNAMIC if dynamic_batch else None,
        )
    return path


one_line_error = assert_one_line  # one `modelpower: error:` line, exit 2


def result(folder):
    (f,) = folder.glob("*.json")
    return read_result(f)


def unfused_reference(p) -> bool:
    """The point was checked against a second, independent execution of its file: on ORT's CPU
    provider, a second session with every graph optimization off (never the measured session)."""
    return "onnxruntime's CPU provider with graph optimizations off" in p.agreement["reference"]


def test_yolov8_layout_onnx_runs_end_to_end_with_our_kernels(invoke, tmp_path):
    f = export(TinyYolo(), tmp_path / "yolo.onnx", (1, 3, 64, 96))
    r = invoke("run", f, "--task", "detect", "-b", "1,2", *FAST, *FRAMES, "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    res = result(tmp_path / "r")
    assert [p.batch_size for p in res.points] == [1, 2]
    for p in res.points:
        assert p.task == "detect" and p.backend == "onnxruntime" and p.precision == "fp32"
        assert p.input_hw == [64, 96] and p.num_classes == 3 and p.preprocess == "numba"
        assert p.backend_info["det_format"] == "yolov8"
        assert set(p.staged) == {"pre", "h2d", "infer", "d2h", "post"}
        assert 0 < p.output_check["detections_per_image"] <= p.output_check["candidates_per_image"] <= 96
        assert unfused_reference(p) and p.agreement["passed"] is True and p.agreement["box_set_agreement"] == 1.0
        assert p.weights["kind"] == "file" and len(p.weights["sha256"]) == 64
        assert p.flops_per_sample > 0
    assert res.config["task"] == "detect"


def test_onnx_files_run_on_openvino_with_and_without_task(invoke, tmp_path):
    pytest.importorskip("openvino")
    f = export(TinyYolo(), tmp_path / "yolo.onnx", (1, 3, 64, 96))
    r = invoke("run", f, "--task", "detect", "--backend", "openvino", *FAST, *FRAMES, "--out", tmp_path / "t")
    assert r.exit_code == 0, r.output
    res = result(tmp_path / "t")
    ((p,),) = [res.points]
    assert p.backend == "openvino" and res.config["backends"] == ["openvino"]
    assert p.backend_info["engine"] == "openvino" and "openvino" in p.backend_info["providers"][0]
    assert "onnxruntime's CPU provider" in p.agreement["reference"]  # another engine: a real comparison
    assert p.agreement["passed"] is True and p.agreement["box_set_agreement"] == 1.0
    r = invoke("run", f, "--backend", "openvino", "-b", "1,2", *FAST, "--out", tmp_path / "r")  # random inputs
    assert r.exit_code == 0, r.output
    points = result(tmp_path / "r").points
    assert [(p.backend, p.batch_size) for p in points] == [("openvino", 1), ("openvino", 2)]
    assert all(p.throughput_sps > 0 and not p.output_check["nan_or_inf"] for p in points)


def test_yolov8_layout_through_the_torch_peer_path(invoke, tmp_path):
    f = export(TinyYolo(), tmp_path / "yolo.onnx", (1, 3, 64, 96))
    r = invoke("run", f, "--task", "detect", "--preprocess", "torchvision", *FAST, *FRAMES, "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    (p,) = result(tmp_path / "r").points
    assert p.preprocess == "torchvision" and p.output_check["detections_per_image"] > 0


def test_classifier_and_segmenter_onnx_run_end_to_end(invoke, tmp_path):
    cls = export(TinyClassifier(), tmp_path / "cls.onnx", (1, 3, 32, 48))
    seg = export(TinySegmenter(), tmp_path / "seg.onnx", (1, 3, 32, 48))
    r = invoke("run", cls, "--task", "classify", *FAST, *FRAMES, "--out", tmp_path / "c")
    assert r.exit_code == 0, r.output
    (p,) = result(tmp_path / "c").points
    assert p.task == "classify" and p.num_classes == 5 and p.input_hw == [32, 48]
    assert unfused_reference(p) and p.agreement["passed"] is True and p.agreement["top1_agreement"] == 1.0
    r = invoke(
        "run",
        seg,
        "--task",
        "segment",
        "--input-size",
        "32x48",
        "--mean",
        "127.5",
        "--std",
        "127.5",
        "--letterbox",
        *FAST,
        *FRAMES,
        "--out",
        tmp_path / "s",
    )
    assert r.exit_code == 0, r.output
    (p,) = result(tmp_path / "s").points
    assert p.task == "segment" and p.num_classes == 4 and p.agreement["pixel_agreement"] == 1.0
    assert unfused_reference(p) and p.agreement["passed"] is True


def test_channel_order_mean_and_std_reach_the_model(tmp_path):
    """--rgb/--bgr, --mean and --std: the batch the model receives, checked channel by channel."""
    from harness.vision import runner as rn
    from harness.vision.images import ImageSource
    from harness.vision.onnx_model import TaskOptions

    f = export(ChannelMeans(), tmp_path / "means.onnx", (1, 3, 8, 8))
    frame = np.zeros((8, 8, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 10, 20, 30  # B, G, R as a camera gives them
    source = ImageSource([frame], bgr=True, description="test")
    settings = rn.RunSettings(device=torch.device("cpu"), backend="onnxruntime")
    for rgb, want in ((True, [30, 20, 10]), (False, [10, 20, 30])):
        opts = TaskOptions("classify", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 2.0), rgb=rgb)
        lm = rn.load_onnx_model(f, opts, settings)
        pipe = rn.VisionPipeline(lm, 1, source, settings, "numba")
        x = pipe.input_batch(0)
        np.testing.assert_allclose(x[0].mean((1, 2)).numpy(), [want[0], want[1], want[2] / 2])


def test_dynamic_batch_onnx_sweeps_every_batch_size(invoke, tmp_path):
    f = export(TinyClassifier(), tmp_path / "m.onnx", (1, 3, 16, 16))
    r = invoke("run", f, "-b", "1,2", *FAST, "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    res = result(tmp_path / "r")
    assert [p.batch_size for p in res.points] == [1, 2]
    assert [p.backend_info["inputs"]["images"] for p in res.points] == [[1, 3, 16, 16], [2, 3, 16, 16]]
    assert res.points[1].flops_per_sample == pytest.approx(res.points[0].flops_per_sample)


def test_a_batch_that_conflicts_with_a_fixed_batch_axis_is_refused(invoke, tmp_path):
    f = export(TinyClassifier(), tmp_path / "fixed.onnx", (2, 3, 16, 16), dynamic_batch=False)
    for task in ([], ["--task", "classify"]):
        one_line_error(
            invoke("run", f, "-b", "4", *task, *FAST, "--out", tmp_path),
            "has a fixed batch axis of 2: -b 4 does not fit",
        )
    r = invoke("run", f, "--task", "classify", *FAST, *FRAMES, "--out", tmp_path / "r")  # no -b: its own batch
    assert r.exit_code == 0, r.output
    assert [p.batch_size for p in result(tmp_path / "r").points] == [2]


@pytest.mark.parametrize(
    ("model", "args", "text"),
    [
        ("cls", ["--task", "detect"], "--task detect expects a first output [N, 4 + classes, anchors] (yolov8) or"),
        ("cls", ["--task", "segment"], "output 'output0' is [2, 5] at input 2x3x32x48"),
        ("yolo", ["--task", "classify"], "--task classify expects a first output [N, classes]"),
        ("yolo", ["--task", "detect", "--det-format", "raw"], "[N, 126, 4 + classes] (raw"),
        ("yolo", ["--task", "detect", "--det-format", "ssd"], "unknown --det-format 'ssd'"),
        ("yolo", ["--task", "detect", "--input-size", "64x64"], "--input-size 64x64 does not fit yolo.onnx"),
        ("yolo", ["--task", "segmentation"], "unknown --task 'segmentation'"),
        ("yolo", ["--task", "classify", "--input-size", "64"], "--input-size must look like 640x640"),
        ("yolo", ["--task", "classify", "--std", "0"], "--std must be at least 0.001"),
        ("yolo", ["--task", "classify", "--mean", "1e308"], "--mean must be within"),
        ("yolo", ["--task", "classify", "--det-format", "raw"], "--det-format applies to --task detect"),
        ("yolo", ["--precision", "fp16", "--task", "detect"], "--precision applies to presets"),
    ],
)
def test_a_model_that_does_not_fit_its_task_is_one_line(invoke, tmp_path, model, args, text):
    f = {
        "cls": lambda: export(TinyClassifier(), tmp_path / "cls.onnx", (1, 3, 32, 48)),
        "yolo": lambda: export(TinyYolo(), tmp_path / "yolo.onnx", (1, 3, 64, 96)),
    }[model]()
    one_line_error(invoke("run", f, *args, *FAST, "--out", tmp_path), text)


def test_dynamic_height_and_width_need_an_input_size(invoke, tmp_path):
    f = tmp_path / "dyn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            TinyClassifier().eval(),
            (torch.randn(1, 3, 32, 32),),
            str(f),
            input_names=["images"],
            dynamic_axes={"images": {0: "n", 2: "h", 3: "w"}},
            dynamo=False,
        )
    one_line_error(invoke("run", f, "--task", "classify", *FAST, "--out", tmp_path), "give --input-size HxW")
    r = invoke("run", f, "--task", "classify", "--input-size", "40x24", *FAST, *FRAMES, "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    assert result(tmp_path / "r").points[0].input_hw == [40, 24]


def test_timm_resnet18_runs_through_torch_and_onnxruntime(invoke, tmp_path):
    r = invoke(
        "run",
        "timm:resnet18",
        "--backend",
        "torch,onnxruntime",
        *FAST,
        *FRAMES,
        "--out",
        tmp_path / "r",
        "--cache-dir",
        tmp_path / "cache",
    )
    assert r.exit_code == 0, r.output
    points = result(tmp_path / "r").points
    assert [p.backend for p in points] == ["torch", "onnxruntime"]
    for p in points:
        assert p.model == "timm:resnet18" and p.task == "classify" and p.input_hw == [224, 224]
        assert p.flops_per_sample == pytest.approx(3.63e9, rel=0.01)  # ResNet-18: 1.81 GMACs at 224
        assert p.agreement["passed"] and p.weights["kind"] == "random-init"
        assert p.weights["batchnorm"]


def test_torchvision_by_name_and_weights_for_it(invoke, tmp_path):
    from models import build_model, get_preset

    p = get_preset("torchvision:squeezenet1_1")
    assert p.input_hw == (224, 224) and p.num_classes == 1000
    model, _ = build_model(p, seed=1)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    r = invoke(
        "run", "torchvision:squeezenet1_1", "--weights", tmp_path / "w.pt", *FAST, *FRAMES, "--out", tmp_path / "r"
    )
    assert r.exit_code == 0, r.output
    assert result(tmp_path / "r").points[0].weights["kind"] == "file"


def test_unknown_architecture_names_suggest_close_ones(invoke, tmp_path):
    one_line_error(invoke("run", "timm:resnet19", *FAST, "--out", tmp_path), "did you mean timm:resnet18")
    one_line_error(invoke("run", "torchvision:resnt50", *FAST, "--out", tmp_path), "torchvision:resnet50")
    one_line_error(invoke("models", "timm:zzz*"), "no timm architecture matches 'zzz*'")


def test_models_lists_timm_and_torchvision_architectures(invoke):
    r = invoke("models", "torchvision:resnet1*")
    assert r.exit_code == 0 and "torchvision:resnet18" in r.stdout and "11.7M" in r.stdout, r.output
    r = invoke("models", "timm:*")
    assert r.exit_code == 0 and "timm:resnet18" in r.stdout and "architectures match" in r.stdout
    assert "modelpower models 'timm:*'" in invoke("models").stdout


@pytest.mark.parametrize("name", ["pcb-defect-yolo", "driving-detect-yolo"])
def test_random_init_detector_has_a_trained_detectors_workload(name):
    """Prior-probability class bias: on generated frames, tens of candidates per image and fewer
    detections after NMS (every anchor used to pass and NMS filled the 300 cap)."""
    from harness.vision.detection import DetectHead
    from harness.vision.images import synthetic_images
    from kernels import letterbox_normalize
    from models import build_model, get_preset

    p = get_preset(name)
    model, record = build_model(p, seed=0)
    assert record["prior"]["class_prior"][0] < 1e-3
    frames = synthetic_images(2, 540, 960, seed=0)
    x, scales, pads = letterbox_normalize(frames.images, p.input_hw, p.mean, p.std, letterbox=True)
    with torch.inference_mode():
        y = model(torch.from_numpy(x)).numpy()
    stats = {}
    _, kept = DetectHead("raw", p.input_hw).decode(y, scales, pads, np.array([[540, 960]] * 2), 0.25, 0.45, 300, stats)
    assert (stats["candidates"] >= 3).all() and (stats["candidates"] <= 500).all(), stats
    assert (kept <= stats["candidates"]).all() and (kept < 300).all()


def test_yolov8_layout_of_our_detector_decodes_to_the_same_detections():
    """Our detector's raw head, decoded into the YOLOv8 layout as an Ultralytics export does it in
    the graph, gives the same kept boxes through yolo_postprocess as the raw head through
    detect_postprocess."""
    from harness.vision.detection import DetectHead
    from models.vision.detector import YoloDetector, anchor_points

    torch.manual_seed(0)
    model = YoloDetector(num_classes=3, width=0.25).eval()
    hw = (64, 96)
    with torch.inference_mode():
        raw = model(torch.rand(2, 3, *hw)) * 2
    a = torch.from_numpy(anchor_points(*hw))
    d = raw[..., :4].clamp(min=0) * a[:, 2:3]
    x1, y1, x2, y2 = a[:, 0] - d[..., 0], a[:, 1] - d[..., 1], a[:, 0] + d[..., 2], a[:, 1] + d[..., 3]
    box = torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)
    v8 = torch.cat([box, torch.sigmoid(raw[..., 4:])], -1).transpose(1, 2).contiguous()
    meta = (np.full((2, 2), 0.5), np.tile([[3.0, 5.0]], (2, 1)), np.tile([[120.0, 200.0]], (2, 1)))
    got_raw, n_raw = DetectHead("raw", hw).decode(raw.numpy(), *meta, 0.25, 0.45, 300)
    got_v8, n_v8 = DetectHead("yolov8", hw).decode(v8.numpy(), *meta, 0.25, 0.45, 300)
    np.testing.assert_array_equal(n_raw, n_v8)
    assert n_raw.min() > 0
    for b in range(2):  # the same set; near-equal scores (sigmoid in float32 vs float64) may swap places
        key = lambda d: d[np.lexsort(np.round(d[:, [3, 2, 1, 0, 5]], 1).T)]  # noqa: E731
        np.testing.assert_allclose(key(got_v8[b, : n_v8[b]]), key(got_raw[b, : n_raw[b]]), rtol=1e-4, atol=1e-3)


class FirstRow(torch.nn.Module):
    """A detector whose output keeps only the first image of the batch."""

    def __init__(self):
        super().__init__()
        self.yolo = TinyYolo()

    def forward(self, x):
        return self.yolo(x)[:1]


class ScaledClassifier(torch.nn.Module):
    """Two inputs: images with a dynamic batch, and a scalar."""

    def __init__(self):
        super().__init__()
        self.cls = TinyClassifier()

    def forward(self, x, t):
        return self.cls(x) * t


def test_output_that_drops_the_batch_and_a_scalar_second_input(invoke, tmp_path):
    f = export(FirstRow(), tmp_path / "first.onnx", (1, 3, 64, 96))
    one_line_error(
        invoke("run", f, "--task", "detect", "-b", "2", *FAST, "--out", tmp_path),
        "--task expects a first output with the input's batch on axis 0",
    )
    g = tmp_path / "scalar.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ScaledClassifier().eval(),
            (torch.randn(1, 3, 16, 16), torch.tensor(2.0)),
            str(g),
            input_names=["images", "t"],
            dynamic_axes={"images": {0: "b"}},
            dynamo=False,
        )
    r = invoke("run", g, "-b", "1,2", *FAST, "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    pts = result(tmp_path / "r").points
    assert [p.backend_info["inputs"] for p in pts] == [
        {"images": [1, 3, 16, 16], "t": []},
        {"images": [2, 3, 16, 16], "t": []},
    ]


def test_our_raw_head_exported_with_dynamic_axes_runs_end_to_end(invoke, tmp_path):
    """Shape inference cannot follow the raw head through a dynamic batch: the graph is probed."""
    from models.vision.detector import YoloDetector

    model = YoloDetector(num_classes=3, width=0.25)
    f = tmp_path / "raw.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (torch.rand(1, 3, 64, 96),),
            str(f),
            input_names=["images"],
            output_names=["output0"],
            dynamic_axes={"images": {0: "b", 2: "h", 3: "w"}, "output0": {0: "b", 1: "n"}},
            dynamo=False,
        )
    r = invoke(
        "run", f, "--task", "detect", "--input-size", "64x96", "-b", "1,2", *FAST, *FRAMES, "--out", tmp_path / "r"
    )
    assert r.exit_code == 0, r.output
    pts = result(tmp_path / "r").points
    assert [p.backend_info["det_format"] for p in pts] == ["raw", "raw"] and pts[0].num_classes == 3


def test_batchnorm_calibration_falls_back_to_the_models_own_size():
    """Some architectures run only at their own input size (Inception's pooling, MaxViT's windows)."""
    from models.vision.weights import calibrate_batchnorm

    class OnlyAt224(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = torch.nn.BatchNorm2d(3)

        def forward(self, x):
            assert x.shape[-1] == 224, "too small"
            return self.bn(x)

    m = OnlyAt224()
    assert calibrate_batchnorm(m, (224, 224), seed=0)
    assert int(m.bn.num_batches_tracked) == 2 and not m.training


def test_timm_pretrained_tags_are_architectures_too(invoke, tmp_path):
    from models import get_preset

    assert get_preset("timm:resnet18.a1_in1k").input_hw == (224, 224)
    one_line_error(invoke("run", "timm:resnet18.zzz", *FAST, "--out", tmp_path), "no pretrained configuration")


def test_a_file_onnxruntime_cannot_load_leaves_no_result_file(invoke, tmp_path, monkeypatch):
    import harness.vision.onnx_model as ox
    from harness.errors import UserError

    f = export(TinyClassifier(), tmp_path / "cls.onnx", (1, 3, 32, 48))

    def refuse(om, device_type, engine="onnxruntime"):
        raise UserError(f"onnxruntime cannot load {om.path}: unsupported (simulated)")

    monkeypatch.setattr(ox, "session", refuse)
    one_line_error(
        invoke("run", f, "--task", "classify", *FAST, *FRAMES, "--out", tmp_path / "r"), "onnxruntime cannot load"
    )
    assert not list((tmp_path / "r").glob("*.json"))  # no incomplete result file left behind


def _reference_session(monkeypatch, make):
    """Replace the second session of the file (the agreement reference: `optimize=False` on ORT's
    CPU provider) by `make(om, device_type, engine, real_session)`; the measured session is untouched."""
    from harness.vision import onnx_model as ox

    real = ox.session

    def session(om, device_type, engine="onnxruntime", optimize=True):
        return real(om, device_type, engine, optimize) if optimize else make(om, device_type, engine, real)

    monkeypatch.setattr(ox, "session", session)


def test_a_reference_with_other_weights_fails_the_check(invoke, tmp_path, monkeypatch):
    """The check can fail: a second execution that computes something else (the file's weights
    perturbed) fails the point and flags it."""
    import onnx
    from onnx import numpy_helper

    from harness.vision import onnx_model as ox

    def perturbed(om, device_type, engine, real):
        m = onnx.ModelProto()
        m.CopyFrom(om.model)
        for t in m.graph.initializer:
            w = numpy_helper.to_array(t)
            if w.dtype == np.float32:
                t.CopyFrom(numpy_helper.from_array(w * 1.5 + 0.1, t.name))
        return real(ox.OnnxModel(om.path, m, om.inputs), device_type, engine, False)

    _reference_session(monkeypatch, perturbed)
    f = export(TinyClassifier(), tmp_path / "cls.onnx", (1, 3, 32, 48))
    r = invoke("run", f, "--task", "classify", *FAST, *FRAMES, "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    (p,) = result(tmp_path / "r").points
    a = p.agreement
    assert unfused_reference(p) and a["passed"] is False and a["max_rel_err"] > a["tolerance_rel"] == 1e-3, a
    assert "accuracy_check_failed" in p.flags and "accuracy_not_checked" not in p.flags


def test_a_session_compared_with_itself_is_never_recorded_as_a_pass(invoke, tmp_path, monkeypatch):
    """Where the only session there is would be the measured one, the point records "not checked"
    (passed None, flag accuracy_not_checked), and the tables read it as such: never a pass nor a failure."""
    from harness.cli.tables import backends_comparison
    from harness.measure.agreement import NOT_CHECKED, agreement
    from harness.vision import onnx_model as ox

    out = np.arange(10, dtype=np.float32).reshape(2, 5)
    for same in (out, out[:]):  # the same outputs, or a view of them: no second execution
        a = agreement(same, out, "fp32", "classify")
        assert a["passed"] is None and a["checked"] == NOT_CHECKED and "compared with themselves" in a["note"]

    real, made = ox.session, {}

    def one_session(om, device_type, engine="onnxruntime", optimize=True):  # every call: the first session
        if "s" not in made:
            made["s"] = real(om, device_type, engine, optimize)
        return made["s"]

    monkeypatch.setattr(ox, "session", one_session)
    f = export(TinyClassifier(), tmp_path / "cls.onnx", (1, 3, 32, 48))
    r = invoke("run", f, "--task", "classify", *FAST, *FRAMES, "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    (p,) = result(tmp_path / "r").points
    a = p.agreement
    assert a["passed"] is None and a["reference"] is None and a["checked"] == NOT_CHECKED, a
    assert "is the measured session itself" in a["note"] and "max_rel_err" not in a, a
    assert "accuracy_not_checked" in p.flags and "accuracy_check_failed" not in p.flags
    assert "accuracy_not_checked" in r.stdout  # the results table's flags column

    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(backends_comparison("cls.onnx", "cpu", [p]))
    text = console.export_text()
    assert "not checked" in text and "pass" not in text and "FAIL" not in text, text


def test_an_int8_file_with_float32_inputs_runs_at_int8_against_its_unfused_self(invoke, tmp_path):
    """A QDQ int8 file taking float32 frames: the point is int8 (precision, MFU peak, the agreement's
    int8 tolerance), read from the graph; checked against the unfused graph (DequantizeLinear, float
    Conv, QuantizeLinear) while the measured session runs ORT's fused int8 kernels."""
    from tests.test_onnx_models import quantized

    f = export(TinyClassifier(), tmp_path / "cls.onnx", (1, 3, 32, 48))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantized(f, tmp_path / "cls-int8.onnx", "QDQ", "images", (1, 3, 32, 48))
    r = invoke("run", q, "--task", "classify", *FAST, *FRAMES, "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    (p,) = result(tmp_path / "r").points
    assert p.precision == "int8" and p.mfu_precision == "int8", (p.precision, p.mfu_precision)
    assert p.backend_info["precision_source"] == "graph: 1 QDQ Conv, 1 QDQ Gemm", p.backend_info
    a = p.agreement
    assert unfused_reference(p) and a["tolerance_rel"] == 0.15 and a["passed"] is True, a
