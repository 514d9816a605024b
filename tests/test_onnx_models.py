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


# ------------------------------------------------------------------------------ precision from the graph
def _graph(path, nodes, inits, x_type=onnx.TensorProto.FLOAT, shape=(2, 4)):
    """A tiny graph saved at `path`: input x [shape] of `x_type`, output y (float32)."""
    from onnx import helper

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", x_type, list(shape))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, list(shape))],
        initializer=inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _low_float_matmuls(path, elem, n=2):
    """float32 in, `n` MatMuls on weights of type `elem` (float16 or bfloat16) inside, float32 out."""
    import numpy as np
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    nodes = [helper.make_node("Cast", ["x"], ["h0"], to=elem), helper.make_node("Cast", ["w"], ["w_low"], to=elem)]
    for i in range(n):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "w_low"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("Cast", [f"h{n}"], ["y"], to=onnx.TensorProto.FLOAT))
    return _graph(path, nodes, [w])


def _fp16_weights(path):
    """float32 in, a MatMul on a float16 weight initializer (the input cast to float16), float32 out."""
    import numpy as np
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.eye(4, dtype=np.float16), "w")
    nodes = [
        helper.make_node("Cast", ["x"], ["h"], to=onnx.TensorProto.FLOAT16),
        helper.make_node("MatMul", ["h", "w"], ["z"]),
        helper.make_node("Cast", ["z"], ["y"], to=onnx.TensorProto.FLOAT),
    ]
    return _graph(path, nodes, [w])


def _matmul_integer(path, float_matmuls=0):
    """float32 in; DynamicQuantizeLinear then MatMulInteger on an int8 weight (int8 inside), then
    `float_matmuls` float32 MatMuls."""
    import numpy as np
    from onnx import helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.ones((4, 4), np.uint8), "wq"),
        numpy_helper.from_array(np.eye(4, dtype=np.float32), "wf"),
    ]
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("MatMulInteger", ["xq", "wq", "xz"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["h0"], to=onnx.TensorProto.FLOAT),
    ]
    for i in range(float_matmuls):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "wf"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("Identity", [f"h{float_matmuls}"], ["y"]))
    return _graph(path, nodes, inits)


def quantized(src, dst, fmt, name="x", shape=(1, 3, 16, 16)):
    """`src` quantized to int8 by onnxruntime's static quantization (QDQ or QOperator format),
    calibrated on four seeded random batches for its input `name`; the inputs stay float32."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.batches = iter([{name: rng.standard_normal(shape, dtype=np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=getattr(QuantFormat, fmt))
    return dst


class SmallCnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.f = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, 2, 1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3, 1, 1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(8, 5),
        )

    def forward(self, x):
        return self.f(x)


@pytest.fixture(scope="module")
def cnn_files(tmp_path_factory):
    """A small CNN as float32 ONNX, and quantized to int8 in the QDQ and the QOperator formats."""
    folder = tmp_path_factory.mktemp("precision")
    torch.manual_seed(0)
    fp32 = export(SmallCnn(), torch.randn(1, 3, 16, 16), folder / "fp32.onnx", {"x": {0: "n"}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "fp32": fp32,
            "qdq": quantized(fp32, folder / "qdq.onnx", "QDQ"),
            "qop": quantized(fp32, folder / "qop.onnx", "QOperator"),
        }


def test_precision_is_read_from_the_graph_not_the_input_type(cnn_files, tmp_path):
    """Every file below takes float32 inputs; what runs inside is int8, float16, bfloat16 or float32."""
    from harness.vision.onnx_model import graph_precision

    def found(path):
        om = load_onnx(path)
        assert om.model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 in
        return graph_precision(om)

    assert found(cnn_files["fp32"]) == ("fp32", "graph: 2 Conv, 1 Gemm on fp32 operands")
    assert found(cnn_files["qdq"]) == ("int8", "graph: 2 QDQ Conv, 1 QDQ Gemm")  # DequantizeLinear -> Conv
    precision, source = found(cnn_files["qop"])
    assert precision == "int8" and "2 QLinearConv" in source, source
    assert found(_matmul_integer(tmp_path / "mmi.onnx")) == ("int8", "graph: 1 MatMulInteger")
    assert found(_fp16_weights(tmp_path / "fp16w.onnx")) == ("fp16", "graph: 1 MatMul on fp16 operands")
    assert found(_low_float_matmuls(tmp_path / "fp16.onnx", onnx.TensorProto.FLOAT16)) == (
        "fp16",
        "graph: 2 MatMul on fp16 operands",
    )
    assert found(_low_float_matmuls(tmp_path / "bf16.onnx", onnx.TensorProto.BFLOAT16))[0] == "bf16"
    # a graph mostly in float32 with one int8 op is float32, and says what else it holds
    assert found(_matmul_integer(tmp_path / "mixed.onnx", float_matmuls=3)) == (
        "fp32",
        "graph: 3 MatMul on fp32 operands; besides, 1 MatMulInteger",
    )
    from onnx import helper

    relu = _graph(tmp_path / "relu.onnx", [helper.make_node("Relu", ["x"], ["y"])], [])
    assert found(relu) == ("fp32", "graph: no Conv, Gemm or MatMul; the input type, fp32")


def test_the_precision_an_engine_runs_a_graph_at(cnn_files, tmp_path):
    """ONNX Runtime's CUDA provider runs QDQ as float math (its int8 kernel is MatMulInteger only);
    OpenVINO at modelpower's f32 hint runs float16 math in fp32; the CPU provider runs QDQ as int8."""
    from harness.vision.onnx_model import graph_precision

    qdq, fp16 = load_onnx(cnn_files["qdq"]), load_onnx(_fp16_weights(tmp_path / "fp16w.onnx"))
    assert (
        graph_precision(qdq, "onnxruntime", "cpu") == graph_precision(qdq) == ("int8", "graph: 2 QDQ Conv, 1 QDQ Gemm")
    )
    assert graph_precision(qdq, "openvino", "cpu")[0] == "int8"
    precision, source = graph_precision(qdq, "onnxruntime", "cuda")
    assert precision == "fp32" and source.startswith("graph: 2 QDQ Conv, 1 QDQ Gemm on fp32 operands; "), source
    assert "CUDA provider runs QDQ as float math" in source
    assert graph_precision(load_onnx(_matmul_integer(tmp_path / "mmi.onnx")), "onnxruntime", "cuda")[0] == "int8"
    assert graph_precision(fp16, "onnxruntime", "cpu")[0] == "fp16"
    assert graph_precision(fp16, "openvino", "cpu") == (
        "fp32",
        "graph: 1 MatMul on fp16 operands; openvino's f32 inference hint runs it in fp32",
    )


def test_a_file_with_float32_inputs_running_int8_gets_the_int8_peak(cnn_files, tmp_path):
    """The point's precision, and so the MFU's peak, come from the graph: the int8 files get int8
    (it was fp32, from the inputs' dtype), the float32 file fp32; the result says how it was found."""
    got = {}
    for name in ("fp32", "qdq", "qop"):
        out = tmp_path / name
        r = runner.invoke(app, ["run", str(cnn_files[name]), "--input-shape", "2x3x16x16", "--out", str(out), *FAST])
        assert r.exit_code == 0, r.output
        (p,) = read_result(next(out.glob("*.json"))).points
        got[name] = p
        assert p.throughput_sps > 0 and not p.output_check["nan_or_inf"]
    for name, want in (("fp32", "fp32"), ("qdq", "int8"), ("qop", "int8")):
        p = got[name]
        assert p.precision == want and p.mfu_precision == want, (name, p.precision, p.mfu_precision)
        assert want in p.mfu_peak_source, p.mfu_peak_source  # the int8 peak (or: no int8 peak known here)
        assert p.backend_info["precision_source"].startswith("graph: "), p.backend_info
    assert "QDQ Conv" in got["qdq"].backend_info["precision_source"]
    assert "QLinearConv" in got["qop"].backend_info["precision_source"]
