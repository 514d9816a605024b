"""The user's own ONNX models: safe loading, FLOPs from the graph, and a timed run through ONNX Runtime.

Loading refuses, with one line naming the file: files that are not ONNX or are truncated, graphs
that fail onnx.checker, and external-data paths that are absolute or leave the model's folder.
FLOPs (multiply-add = 2) are counted from the graph after shape inference at the run's input
shape: Conv, ConvTranspose, Gemm and MatMul (attention's QK^T and AV are MatMuls); other ops count 0.
The precision (the peak MFU is taken against) is read from the graph's ops, not from its input type:
int8 ops and QDQ groups, or the float type the math ops compute in (`graph_precision`).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper, shape_inference

from harness.errors import UserError, first_line
from harness.vision.detection import FORMATS, recognise
from models.vision.detector import anchor_points
from models.vision.preset import IMAGENET_MEAN, IMAGENET_STD, TASKS, Preset

DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "uint8": np.uint8}


@dataclass
class OnnxModel:
    path: Path
    model: onnx.ModelProto
    inputs: dict[str, list]  # name -> declared dims (int, or str for a symbolic axis)


def load_onnx(path: Path) -> OnnxModel:
    """Read and check an ONNX file; a UserError naming the file for every way it can be bad."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not an ONNX file")
    if not path.is_file():
        raise UserError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise UserError(f"{path} is not a readable ONNX model (not ONNX, or truncated): {first_line(e)}") from None
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
        raise UserError(f"{path} fails the ONNX checker: {first_line(e)}") from None
    if any(True for _ in _external_tensors(model)):
        onnx.load_external_data_for_model(model, str(folder))
    init = {i.name for i in model.graph.initializer}
    inputs = {
        i.name: [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in i.type.tensor_type.shape.dim]
        for i in model.graph.input
        if i.name not in init
    }
    if not inputs:
        raise UserError(f"{path} declares no inputs (every graph input is an initializer): nothing to feed a batch to")
    if all(not dims for dims in inputs.values()):  # a scalar beside a batched input is fine (a parameter)
        raise UserError(f"{path}: every input is a scalar (rank 0): a batch needs an input with an axis to stack along")
    return OnnxModel(path, model, inputs)


def _external_tensors(model: onnx.ModelProto):
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            yield t


def parse_input_shapes(om: OnnxModel, specs: list[str], batch: int | None = None) -> dict[str, tuple[int, ...]]:
    """'1x3x224x224' (the only input) or 'name:1x3x224x224' -> concrete shape per input.

    With `batch` (a `-b` value), axis 0 of every input is that batch and `--input-shape` gives the
    other axes ('3x224x224'); a fixed batch axis that differs is refused."""
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
        rank = len(om.inputs[name])
        if batch is not None and _batched(om.inputs[name]):
            if len(shape) == rank:
                raise UserError(
                    f"-b gives the batch: --input-shape {spec!r} should give the other axes of input "
                    f"{name!r} ({'x'.join(map(str, shape[1:]))})"
                )
            shape = (batch, *shape)
        if len(shape) != rank:
            raise UserError(f"input {name!r} has {rank} axes {om.inputs[name]}, got shape {shape}")
        if any(d < 1 for d in shape):
            raise UserError(f"--input-shape {spec!r}: every axis must be at least 1, got {'x'.join(map(str, shape))}")
        shapes[name] = shape
    for name, declared in om.inputs.items():
        if name not in shapes:
            shape = list(declared)
            if batch is not None and _batched(declared):
                shape[0] = batch
            if not all(isinstance(d, int) and d > 0 for d in shape):
                hint = "the other axes" if batch is not None else "SHAPE"
                raise UserError(f"input {name!r} has dynamic axes {declared}: give --input-shape {name}:{hint}")
            shapes[name] = tuple(shape)
    if batch is not None and fixed_batch(om) not in (None, batch):
        raise UserError(
            f"{om.path.name} has a fixed batch axis of {fixed_batch(om)}: -b {batch} does not fit "
            "(export the model with a dynamic batch axis to sweep batch sizes)"
        )
    for name, shape in shapes.items():
        declared = om.inputs[name]
        for d, want in zip(shape, declared, strict=True):
            if isinstance(want, int) and want > 0 and want != d:
                raise UserError(f"input {name!r} is declared {declared}: {shape} does not fit")
    return shapes


def _batched(declared: list) -> bool:
    """Does -b set this input's axis 0? Yes where that axis is dynamic (scalars have none)."""
    return bool(declared) and not (isinstance(declared[0], int) and declared[0] > 0)


def fixed_batch(om: OnnxModel) -> int | None:
    """The model's batch when no input leaves axis 0 dynamic (the largest fixed axis 0), else None:
    -b then sets axis 0 of the inputs that leave it dynamic, and the others keep their shape."""
    dims = [d for d in om.inputs.values() if d]
    if not dims or any(_batched(d) for d in dims):
        return None
    return max(d[0] for d in dims)


def _at_shapes(om: OnnxModel, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """A copy of the model whose inputs are declared at the concrete `shapes`."""
    m = onnx.ModelProto()
    m.CopyFrom(om.model)
    for i in m.graph.input:
        if i.name in shapes:
            for d, v in zip(i.type.tensor_type.shape.dim, shapes[i.name], strict=True):
                d.Clear()
                d.dim_value = v
    return m


def count_flops(om: OnnxModel, shapes: dict[str, tuple[int, ...]]) -> int:
    """FLOPs of one forward pass at `shapes` (multiply-add = 2), from the inferred graph."""
    m = shape_inference.infer_shapes(_at_shapes(om, shapes), data_prop=True)
    known: dict[str, list[int]] = {}
    for vi in (*m.graph.input, *m.graph.value_info, *m.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim]
        known[vi.name] = dims
    for t in m.graph.initializer:
        known[t.name] = list(t.dims)
    counted = [n for n in m.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")]
    needed = {name for n in counted for name in (*n.input[:2], *n.output[:1]) if name}
    unknown = [name for name in needed if not known.get(name) or 0 in known[name]]
    if unknown:  # shape inference lost track (e.g. after a Split whose sizes it cannot see)
        known.update(_probe_shapes(om, shapes, unknown))
    total = 0
    for node in counted:
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


def _probe_shapes(om: OnnxModel, shapes: dict[str, tuple[int, ...]], names: list[str]) -> dict[str, list[int]]:
    """The shapes of tensors `names` found by running the graph once on zeros at `shapes` (ONNX
    Runtime, CPU), for what static shape inference could not resolve."""
    m = onnx.ModelProto()
    m.CopyFrom(om.model)
    outputs = {o.name for o in m.graph.output}
    inits = {t.name for t in m.graph.initializer}
    names = [n for n in names if n not in inits]
    for name in names:
        if name not in outputs:
            m.graph.output.append(onnx.ValueInfoProto(name=name))
    feeds = {}
    for i in m.graph.input:
        if i.name in shapes:
            elem = onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
            feeds[i.name] = np.zeros(shapes[i.name], elem)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        sess = ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
        values = sess.run(names, feeds)
    except Exception as e:
        raise UserError(f"{om.path.name}: cannot count FLOPs at input {shapes}: {first_line(e)}") from None
    return {n: list(v.shape) for n, v in zip(names, values, strict=True)}


def random_inputs(shapes: dict[str, tuple[int, ...]], dtype: str, seed: int) -> dict[str, np.ndarray]:
    """Seeded random inputs, drawn in their own dtype (float16 through one float32 input at a time):
    `input_bytes` is what this allocates at its peak."""
    if dtype not in DTYPES:
        raise UserError(f"--input-dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        want = np.dtype(DTYPES[dtype])
        if np.issubdtype(want, np.integer):
            out[name] = rng.integers(0, 100, shape, dtype=want)
        elif want in (np.float32, np.float64):
            out[name] = rng.standard_normal(shape, dtype=want)
        else:
            out[name] = rng.standard_normal(shape, dtype=np.float32).astype(want)
    return out


def input_bytes(shapes: dict[str, tuple[int, ...]], dtype: str) -> int:
    """The peak host bytes `random_inputs` allocates for `shapes`: every input, plus the float32 draw
    of the largest one when the dtype is narrower than float32."""
    itemsize = np.dtype(DTYPES[dtype]).itemsize
    sizes = [math.prod(s) for s in shapes.values()]
    narrow = np.issubdtype(DTYPES[dtype], np.floating) and itemsize < 4
    return sum(sizes) * itemsize + (max(sizes, default=0) * 4 if narrow else 0)


def session(om: OnnxModel, device_type: str, engine: str = "onnxruntime", optimize: bool = True):
    """(session, seconds to create it): the file on onnxruntime (CPU or CUDA provider) or on OpenVINO's
    CPU plugin (`harness.backends.openvino.FileSession`, which answers like an onnxruntime session).
    `optimize=False`: onnxruntime with every graph optimization off (no fusion, no constant folding,
    no layout change): a second, independent execution of the same file, the reference of a run on
    onnxruntime's own CPU provider."""
    if engine == "openvino":
        from harness.backends.openvino import FileSession  # the optional openvino extra

        if device_type != "cpu":
            raise UserError(f"modelpower runs OpenVINO on the CPU only (this run is on {device_type})")
        t = time.perf_counter()
        return FileSession(om.path), time.perf_counter() - t

    provider = "CUDAExecutionProvider" if device_type == "cuda" else "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        raise UserError(f"onnxruntime {ort.__version__} has no {provider}")
    if provider != "CPUExecutionProvider" and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # CUDA/cuDNN libraries from the nvidia-* wheels torch brought
    t = time.perf_counter()
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: a failure reaches the user as our one line, not ORT's log
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(om.model.SerializeToString(), options, providers=[provider])
    except Exception as e:
        raise UserError(f"onnxruntime cannot load {om.path}: {first_line(e)}") from None
    if provider not in sess.get_providers():  # ORT falls back silently when a provider fails to load
        raise UserError(
            f"onnxruntime could not load {provider} (the session runs on {', '.join(sess.get_providers())})"
        )
    return sess, time.perf_counter() - t


def weights_of(om: OnnxModel) -> int:
    return int(sum(numpy_helper.to_array(t).size for t in om.model.graph.initializer))


# ------------------------------------------------------------------------------ precision from the graph
MATH_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")  # the ops FLOPs are counted on
INT8_OPS = (  # math in 8-bit integers, 32-bit accumulation (ONNX and ONNX Runtime's com.microsoft ops)
    "QLinearConv",
    "QLinearMatMul",
    "MatMulInteger",
    "ConvInteger",
    "QGemm",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
    "QAttention",
)
INT8_TYPES = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
FLOAT_TYPES = {
    onnx.TensorProto.FLOAT: "fp32",
    onnx.TensorProto.FLOAT16: "fp16",
    onnx.TensorProto.BFLOAT16: "bf16",
    onnx.TensorProto.DOUBLE: "fp64",
}


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Every tensor's element type the graph states or ONNX type inference finds (no shapes needed)."""
    with contextlib.suppress(Exception):  # a model over 2 GB: what the graph declares
        model = shape_inference.infer_shapes(model)
    g = model.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in (*g.input, *g.value_info, *g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    types[n.output[0]] = a.t.data_type
    return {k: v for k, v in types.items() if v}


def graph_precision(om: OnnxModel, engine: str | None = None, device_type: str = "cpu") -> tuple[str, str]:
    """(precision, how it was found) of the graph's math, read from its ops, never from its inputs'
    dtype (a graph may take float32 and run int8 or float16 inside).

    Counted over the math ops (those FLOPs are counted on, and their quantized forms): int8 ops
    (QLinearConv, QLinearMatMul, MatMulInteger, ConvInteger, QGemm, ...) and QDQ math (a Conv, Gemm,
    MatMul or ConvTranspose whose data and weight both come straight from an int8/uint8
    DequantizeLinear, which ONNX Runtime's CPU provider and OpenVINO fuse into int8 kernels); every
    other math op by the element type of its operands (float16 or bfloat16 weights computing in
    that type). int8 when at least half the math ops are int8, else the float type most of them
    compute in; a graph with no math op: its first float input's type.

    `engine` None: the graph's own precision. With an engine, what that engine runs it at:
    onnxruntime's CUDA provider runs QDQ as float math (its int8 kernels: MatMulInteger only, ORT's
    FAQ); OpenVINO, compiled with the f32 inference hint (`harness.backends.openvino.FileSession`),
    runs float16 and bfloat16 math in fp32."""
    g = om.model.graph
    types = _elem_types(om.model)
    producer = {o: n for n in g.node for o in n.output}
    qdq_float = engine == "onnxruntime" and device_type == "cuda"

    def int8_dq(name: str) -> bool:
        n = producer.get(name)
        return n is not None and n.op_type == "DequantizeLinear" and types.get(n.input[0]) in INT8_TYPES

    ins = [FLOAT_TYPES[types[i.name]] for i in g.input if types.get(i.name) in FLOAT_TYPES]
    default = ins[0] if ins else "fp32"  # for an op whose operand types inference could not find
    int8: dict[str, int] = {}
    floats: dict[tuple[str, str], int] = {}
    for n in g.node:
        if n.op_type in INT8_OPS:
            int8[n.op_type] = int8.get(n.op_type, 0) + 1
        elif n.op_type in MATH_OPS:
            qdq = len(n.input) > 1 and int8_dq(n.input[0]) and int8_dq(n.input[1])
            if qdq and not qdq_float:
                int8[f"QDQ {n.op_type}"] = int8.get(f"QDQ {n.op_type}", 0) + 1
                continue
            elem = next((types[i] for i in n.input[:2] if types.get(i) in FLOAT_TYPES), None)
            key = (FLOAT_TYPES.get(elem, default), f"QDQ {n.op_type}" if qdq else n.op_type)
            floats[key] = floats.get(key, 0) + 1
    n_int8, n_float = sum(int8.values()), sum(floats.values())
    if n_int8 + n_float == 0:
        return default, f"graph: no Conv, Gemm or MatMul; the input type, {default}"

    def listed(counts: dict[str, int]) -> str:
        return ", ".join(f"{v} {k}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    by_type: dict[str, int] = {}
    for (t, _), v in floats.items():
        by_type[t] = by_type.get(t, 0) + v
    if n_int8 * 2 >= n_int8 + n_float:
        precision, found, others = "int8", listed(int8), {f"{t} {op}": v for (t, op), v in floats.items()}
    else:
        precision = max(by_type, key=lambda t: (by_type[t], t == "fp32"))
        found = listed({op: v for (t, op), v in floats.items() if t == precision}) + f" on {precision} operands"
        others = {**int8, **{f"{t} {op}": v for (t, op), v in floats.items() if t != precision}}
    source = f"graph: {found}" + (f"; besides, {listed(others)}" if others else "")
    if qdq_float and any(op.startswith("QDQ ") for _, op in floats):
        source += "; onnxruntime's CUDA provider runs QDQ as float math (its int8 kernels: MatMulInteger only)"
    if engine == "openvino" and precision in ("fp16", "bf16"):
        precision, source = "fp32", f"{source}; openvino's f32 inference hint runs it in fp32"
    return precision, source


# ------------------------------------------------------------------------------ --task: our pipeline
@dataclass
class TaskOptions:
    """How a user's ONNX model takes frames and what its output is (`modelpower run model.onnx --task`)."""

    task: str
    input_hw: tuple[int, int] | None = None  # --input-size; None: read from the model
    mean: tuple[float, float, float] | None = None  # 0..255 scale; None: the task's convention
    std: tuple[float, float, float] | None = None
    letterbox: bool | None = None  # None: detection letterboxes, the others resize
    rgb: bool = True
    det_format: str | None = None  # None: recognised from the output shape


INPUT_TYPES = {onnx.TensorProto.FLOAT: "fp32", onnx.TensorProto.FLOAT16: "fp16"}


def _elem_type(om: OnnxModel, name: str) -> int:
    return next(i.type.tensor_type.elem_type for i in om.model.graph.input if i.name == name)


def output_shapes(om: OnnxModel, shapes: dict[str, tuple[int, ...]]) -> dict[str, list]:
    """Each graph output's shape at the input `shapes`, from shape inference (0 where unknown)."""
    try:
        m = shape_inference.infer_shapes(_at_shapes(om, shapes), data_prop=True)
    except Exception as e:
        raise UserError(f"{om.path.name}: ONNX shape inference fails at input {shapes}: {first_line(e)}") from None
    outs = {
        o.name: [d.dim_value if d.HasField("dim_value") else 0 for d in o.type.tensor_type.shape.dim]
        for o in m.graph.output
    }
    unknown = [n for n, dims in outs.items() if not dims or 0 in dims]
    if unknown:  # static inference lost track (a dynamic axis it cannot follow): run the graph once
        outs.update(_probe_shapes(om, shapes, unknown))
    return outs


def task_preset(om: OnnxModel, opts: TaskOptions):
    """The ONNX model as a preset of our pipeline: one image input [N, 3, H, W] (float32 or float16)
    and a first output that fits the task. Returns (preset, input name, precision); a UserError
    saying what was expected and what was found otherwise."""
    name = om.path.name
    if opts.task not in TASKS:
        raise UserError(f"unknown --task {opts.task!r}: use {', '.join(TASKS)}")
    if len(om.inputs) != 1:
        raise UserError(
            f"--task needs a model with one image input; {name} has {len(om.inputs)}: {', '.join(om.inputs)}"
        )
    ((inp, dims),) = om.inputs.items()
    fixed = [d if isinstance(d, int) and d > 0 else None for d in dims]
    if len(dims) != 4 or fixed[1] not in (3, None):
        raise UserError(f"--task expects an image input [N, 3, H, W]; {name} input {inp!r} is {dims}")
    precision = INPUT_TYPES.get(_elem_type(om, inp))
    if precision is None:
        elem = onnx.TensorProto.DataType.Name(_elem_type(om, inp)).lower()
        raise UserError(f"--task expects a float32 or float16 image input; {name} input {inp!r} is {elem}")
    hw = opts.input_hw
    if hw is None:
        if fixed[2] is None or fixed[3] is None:
            raise UserError(f"{name} input {inp!r} is {dims}: its height and width are dynamic; give --input-size HxW")
        hw = (fixed[2], fixed[3])
    for axis, want, what in ((2, hw[0], "height"), (3, hw[1], "width")):
        if fixed[axis] is not None and fixed[axis] != want:
            raise UserError(
                f"--input-size {hw[0]}x{hw[1]} does not fit {name}: input {inp!r} is {dims} "
                f"(fixed {what} {fixed[axis]})"
            )
    batch = fixed[0] or 2  # a dynamic batch axis is checked at 2, so an output that drops it shows
    outs = output_shapes(om, {inp: (batch, 3, *hw)})
    out_name, shape = next(iter(outs.items()))
    shape = tuple(shape)
    found = f"{name} output {out_name!r} is {list(shape)} at input {batch}x3x{hw[0]}x{hw[1]}"
    if not shape or shape[0] != batch:
        raise UserError(f"--task expects a first output with the input's batch on axis 0; {found}")
    det_format = None
    if any(d == 0 for d in shape[1:]):
        raise UserError(f"{found}: its size is unknown to shape inference, so it cannot be checked against --task")
    if opts.task == "classify":
        if len(shape) != 2 or shape[1] < 1:
            raise UserError(f"--task classify expects a first output [N, classes]; {found}")
        classes = shape[1]
    elif opts.task == "segment":
        if len(shape) != 4 or shape[1] < 2:
            raise UserError(f"--task segment expects a first output [N, classes, h, w]; {found}")
        classes = shape[1]
    else:
        if opts.det_format not in (None, *FORMATS):
            raise UserError(f"unknown --det-format {opts.det_format!r}: use {', '.join(FORMATS)}")
        det_format = opts.det_format or recognise(shape, hw)
        if det_format == "raw":
            fits = recognise(shape, hw) == "raw"
        else:
            fits = det_format == "yolov8" and len(shape) == 3 and shape[1] >= 5
        if not fits:
            n = len(anchor_points(*hw))
            raise UserError(
                f"--task detect expects a first output [N, 4 + classes, anchors] (yolov8) or "
                f"[N, {n}, 4 + classes] (raw, strides 8/16/32); {found}"
            )
        classes = (shape[2] if det_format == "raw" else shape[1]) - 4
    detect = opts.task == "detect"
    preset = Preset(
        name=name,
        industry="-",
        task=opts.task,
        arch="ONNX file",
        input_hw=hw,
        num_classes=int(classes),
        builder=None,
        description=str(om.path),
        letterbox=detect if opts.letterbox is None else opts.letterbox,
        mean=opts.mean or ((0.0, 0.0, 0.0) if detect else IMAGENET_MEAN),
        std=opts.std or ((255.0, 255.0, 255.0) if detect else IMAGENET_STD),
        rgb=opts.rgb,
        det_format=det_format or "raw",
    )
    return preset, inp, precision
