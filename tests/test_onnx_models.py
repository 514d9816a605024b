"""The user's own ONNX models: FLOPs from the graph against torch's count, and every bad input."""

import warnings

import onnx
import pytest
import torch
from typer.testing import CliRunner

from harness.cli import app
from harness.errors import UserError
from harness.measure.flops import count_flops as torch_flops
from harness.results.schema import read_result
from harness.vision.onnx_model import count_flops, load_onnx, parse_input_shapes

runner = CliRunner()
FAST = ["--min-duration", "0", "--min-iters", "2", "--warmup", "1", "--device", "cpu"]


def export(model, example, path, dynamic=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (example,),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,
        )
    return path


class Mixed(torch.nn.Module):
    """Conv, ConvTranspose, an attention-like pair of MatMuls and a Linear (Gemm)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1, groups=1)
        self.up = torch.nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.fc = torch.nn.Linear(16, 5)

    def forward(self, x):
        h = self.up(self.conv(x))  # [B, 4, 2H, 2W]
        t = h.flatten(2)  # [B, 4, N]
        att = torch.softmax(t @ t.transpose(1, 2), -1) @ t  # QK^T and AV
        return self.fc(att[:, :, :16])


@pytest.fixture(scope="module")
def tv_model(tmp_path_factory):
    import torchvision

    torch.manual_seed(0)
    m = torchvision.models.resnet18(num_classes=10)
    path = tmp_path_factory.mktemp("onnx") / "resnet18.onnx"
    export(m, torch.randn(1, 3, 96, 96), path, {"x": {0: "batch", 2: "h", 3: "w"}})
    return m, path


def test_third_party_model_runs_with_flops_matching_torch(tv_model, tmp_path):
    m, path = tv_model
    r = runner.invoke(app, ["run", str(path), "--input-shape", "2x3x128x160", "--out", str(tmp_path), *FAST])
    assert r.exit_code == 0, r.output
    p = read_result(next(tmp_path.glob("*.json"))).points[0]
    expected = torch_flops(m.eval(), torch.zeros(2, 3, 128, 160)) / 2
    assert abs(p.flops_per_sample - expected) / expected < 0.02
    assert p.throughput_sps > 0 and p.backend == "onnxruntime" and p.mfu_precision == "fp32"
    assert p.weights["kind"] == "file" and len(p.weights["sha256"]) == 64


def test_flops_of_every_counted_op_against_torch(tmp_path):
    m = Mixed()
    path = export(m, torch.randn(1, 3, 4, 4), tmp_path / "mixed.onnx")
    om = load_onnx(path)
    got = count_flops(om, parse_input_shapes(om, []))
    assert abs(got - torch_flops(m.eval(), torch.randn(1, 3, 4, 4))) / got < 0.02


def test_flops_after_a_split_that_shape_inference_loses(tmp_path):
    """Our detector's C2f blocks export `chunk` as a Split whose sizes ONNX shape inference cannot
    see: every Conv after it has unknown dims. The count must still match torch's (it read 1.3 of
    27 GFLOPs before the graph was probed)."""
    from models import get_preset
    from models.vision.detector import C2f

    m = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, 2, 1), C2f(16, 32, 2))
    path = export(m, torch.randn(1, 3, 64, 64), tmp_path / "c2f.onnx", {"x": {0: "n"}})
    om = load_onnx(path)
    got = count_flops(om, {"x": (2, 3, 64, 64)})
    assert got == pytest.approx(torch_flops(m.eval(), torch.randn(2, 3, 64, 64)), rel=0.01)
    assert get_preset("pcb-defect-yolo")  # the preset this block is from


def test_not_onnx_and_truncated(tv_model, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a model")
    with pytest.raises(UserError, match="not a readable ONNX model"):
        load_onnx(bad)
    data = tv_model[1].read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a readable ONNX model"):
        load_onnx(bad)


def test_checker_failure(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["undefined"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "broken.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(UserError, match="fails the ONNX checker"):
        load_onnx(path)


def test_external_data_outside_the_folder_is_refused(tmp_path):
    m = torch.nn.Linear(64, 64)
    path = export(m, torch.randn(1, 64), tmp_path / "ext.onnx")
    model = onnx.load(str(path))
    onnx.save_model(model, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert load_onnx(path).inputs == {"x": [1, 64]}  # inside the folder: fine
    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../../etc/passwd"
    onnx.save(model, str(path))
    with pytest.raises(UserError, match="points outside the model's folder"):
        load_onnx(path)


def test_inputs_the_model_does_not_declare(tv_model, tmp_path):
    path = tv_model[1]
    om = load_onnx(path)
    with pytest.raises(UserError, match="does not declare an input 'image'"):
        parse_input_shapes(om, ["image:1x3x64x64"])
    with pytest.raises(UserError, match="dynamic axes"):
        parse_input_shapes(om, [])
    with pytest.raises(UserError, match=r"3 axes|4 axes"):
        parse_input_shapes(om, ["1x3x64"])
    r = runner.invoke(app, ["run", str(path), "--input-shape", "image:1x3x64x64", "--out", str(tmp_path)])
    assert r.exit_code == 2 and r.stderr.startswith("modelpower: error:") and len(r.stderr.strip().splitlines()) == 1
