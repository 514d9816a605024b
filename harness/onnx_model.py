"""The user's own ONNX models: safe loading, FLOPs from the graph, and a timed run through ONNX Runtime.

Loading refuses, with one line naming the file: files that are not ONNX or are truncated, graphs
that fail onnx.checker, and external-data paths that are absolute or leave the model's folder.
FLOPs (multiply-add = 2) are counted from the graph after shape inference at the run's input
shape: Conv, ConvTranspose, Gemm and MatMul (attention's QK^T and AV are MatMuls); other ops count 0.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from harness.errors import UserError

DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "uint8": np.uint8}


@dataclass
class OnnxModel:
    path: Path
    model: onnx.ModelProto
    inputs: dict[str, list]  # name -> declared dims (int, or str for a symbolic axis)


def load_onnx(path: Path) -> OnnxModel:
    """Read and check an ONNX file; a UserError naming the file for every way it can be bad."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise UserError(f"{path} is not a readable ONNX model (not ONNX, or truncated): {_first(e)}") from None
    folder = path.resolve().parent
    for t in _external_tensors(model):
        loc = next((e.value for e in t.external_data if e.key == "location"), "")
        target = (folder / loc).resolve()
        if Path(loc).is_absolute() or not target.is_relative_to(folder):
            raise UserError(f"{path}: external data {loc!r} of tensor {t.name!r} points outside the model's folder")
        if not target.is_file():
            raise UserError(f"{path}: external data file {loc!r} of tensor {t.name!r} is missing")
    try:
        onnx.checker.check_model(str(path))
    except Exception as e:
        raise UserError(f"{path} fails the ONNX checker: {_first(e)}") from None
    if any(True for _ in _external_tensors(model)):
        onnx.load_external_data_for_model(model, str(folder))
    init = {i.name for i in model.graph.initializer}
    inputs = {
        i.name: [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in i.type.tensor_type.shape.dim]
        for i in model.graph.input
        if i.name not in init
    }
    return OnnxModel(path, model, inputs)


def _first(e: Exception) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:200] if s else type(e).__name__


def _external_tensors(model: onnx.ModelProto):
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            yield t


def parse_input_shapes(om: OnnxModel, specs: list[str]) -> dict[str, tuple[int, ...]]:
    """'1x3x224x224' (the only input) or 'name:1x3x224x224' -> concrete shape per input."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, _, dims = spec.rpartition(":")
        if not name:
            if len(om.inputs) != 1:
                raise UserError(f"the model has inputs {', '.join(om.inputs)}: give --input-shape NAME:SHAPE")
            name = next(iter(om.inputs))
        if name not in om.inputs:
            raise UserError(f"the model does not declare an input {name!r}; it declares {', '.join(om.inputs)}")
        if name in shapes:
            raise UserError(f"--input-shape gives input {name!r} twice")
        try:
            shape = tuple(int(d) for d in dims.lower().replace(",", "x").split("x"))
        except ValueError:
            raise UserError(f"--input-shape must look like 1x3x224x224, got {spec!r}") from None
        if any(d < 1 for d in shape) or len(shape) != len(om.inputs[name]):
            raise UserError(f"input {name!r} has {len(om.inputs[name])} axes {om.inputs[name]}, got shape {shape}")
        for d, declared in zip(shape, om.inputs[name], strict=True):
            if isinstance(declared, int) and declared > 0 and declared != d:
                raise UserError(f"input {name!r} is declared {om.inputs[name]}: {shape} does not fit")
        shapes[name] = shape
    for name, declared in om.inputs.items():
        if name not in shapes:
            if not all(isinstance(d, int) and d > 0 for d in declared):
                raise UserError(f"input {name!r} has dynamic axes {declared}: give --input-shape {name}:SHAPE")
            shapes[name] = tuple(declared)
    return shapes


def count_flops(om: OnnxModel, shapes: dict[str, tuple[int, ...]]) -> int:
    """FLOPs of one forward pass at `shapes` (multiply-add = 2), from the inferred graph."""
    m = onnx.ModelProto()
    m.CopyFrom(om.model)
    for i in m.graph.input:
        if i.name in shapes:
            for d, v in zip(i.type.tensor_type.shape.dim, shapes[i.name], strict=True):
                d.Clear()
                d.dim_value = v
    m = shape_inference.infer_shapes(m, data_prop=True)
    known: dict[str, list[int]] = {}
    for vi in (*m.graph.input, *m.graph.value_info, *m.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim]
        known[vi.name] = dims
    for t in m.graph.initializer:
        known[t.name] = list(t.dims)
    total = 0
    for node in m.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        ins = [known.get(n) for n in node.input]
        out = known.get(node.output[0]) if node.output else None
        if node.op_type == "Conv" and out and ins[1]:
            w = ins[1]  # [Cout, Cin/group, kH, kW]
            total += 2 * math.prod(out) * math.prod(w[1:])
        elif node.op_type == "ConvTranspose" and ins[0] and ins[1]:
            w = ins[1]  # [Cin, Cout/group, kH, kW]
            total += 2 * math.prod(ins[0]) * math.prod(w[1:])
        elif node.op_type == "Gemm" and ins[0] and ins[1]:
            a, b = ins[0], ins[1]
            k = a[0] if attrs.get("transA") else a[1]
            n = b[0] if attrs.get("transB") else b[1]
            total += 2 * (a[1] if attrs.get("transA") else a[0]) * k * n
        elif node.op_type == "MatMul" and ins[0] and ins[1] and out:
            k = ins[0][-1]
            total += 2 * math.prod(out) * k
    return int(total)


def random_inputs(shapes: dict[str, tuple[int, ...]], dtype: str, seed: int) -> dict[str, np.ndarray]:
    if dtype not in DTYPES:
        raise UserError(f"--input-dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        if np.issubdtype(DTYPES[dtype], np.integer):
            out[name] = rng.integers(0, 100, shape).astype(DTYPES[dtype])
        else:
            out[name] = rng.standard_normal(shape).astype(DTYPES[dtype])
    return out


def session(om: OnnxModel, device_type: str):
    import onnxruntime as ort

    provider = "CUDAExecutionProvider" if device_type == "cuda" else "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        raise UserError(f"onnxruntime {ort.__version__} has no {provider}")
    t = time.perf_counter()
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: a failure reaches the user as our one line, not ORT's log
    try:
        sess = ort.InferenceSession(om.model.SerializeToString(), options, providers=[provider])
    except Exception as e:
        raise UserError(f"onnxruntime cannot load {om.path}: {_first(e)}") from None
    return sess, time.perf_counter() - t


def weights_of(om: OnnxModel) -> int:
    return int(sum(numpy_helper.to_array(t).size for t in om.model.graph.initializer))
