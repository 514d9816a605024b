"""ONNX export of a model (dynamic batch axis), validated with onnx.checker, cached on disk by
model + opset + precision; int8 by ONNX Runtime static quantization calibrated on given inputs."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

OPSET = 17


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> float:
    """Export to `path` (atomically) and check it; returns the seconds it took."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(str(tmp))
    tmp.replace(path)
    return time.perf_counter() - t


def _cached(path: Path) -> bool:
    """A usable cached model at `path`: present and passing onnx.checker."""
    if not path.is_file():
        return False
    try:
        onnx.checker.check_model(str(path))
        return True
    except Exception:  # any damage: rebuild it
        return False


class _Calibration:
    """onnxruntime.quantization's data-reader protocol over a list of host batches: `get_next` gives
    them in order, then None; `rewind` starts them over, so that a second calibration pass sees them all."""

    def __init__(self, batches: list[np.ndarray]):
        self.batches = list(batches)
        self._left = iter(self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch as the model's feed, or None once every batch has been given."""
        b = next(self._left, None)
        return None if b is None else {"input": b}

    def rewind(self) -> None:
        """Start over from the first batch."""
        self._left = iter(self.batches)


def quantize_int8(fp32_path: Path, out_path: Path, calibration: list[np.ndarray]) -> float:
    """Static int8 quantization (QDQ, per-channel weights) calibrated on `calibration` batches."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static  # int8 runs only

    if not calibration:
        raise ValueError("int8 quantization needs calibration batches")
    tmp = out_path.with_suffix(".tmp.onnx")
    t = time.perf_counter()
    quantize_static(
        str(fp32_path),
        str(tmp),
        _Calibration(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
    )
    onnx.checker.check_model(str(tmp))
    tmp.replace(out_path)
    return time.perf_counter() - t


def cached_onnx(
    model: torch.nn.Module,
    example: torch.Tensor,
    precision: str,
    key: str,
    cache_dir: Path,
    calibration: list[np.ndarray],
) -> tuple[Path, float, bool]:
    """(path, seconds spent exporting/quantizing now, whether the cache had it). A cached file that
    fails onnx.checker (truncated, overwritten) is rebuilt, not used."""
    folder = cache_dir / "onnx"
    fp32 = folder / f"{key}-opset{OPSET}-fp32.onnx"
    spent = 0.0
    if precision == "fp16":
        path = folder / f"{key}-opset{OPSET}-fp16.onnx"
        if _cached(path):
            return path, 0.0, True
        return path, export_onnx(model.half(), example.half(), path), False
    hit = _cached(fp32)
    if not hit:
        spent += export_onnx(model.float(), example.float(), fp32)
    if precision == "fp32":
        return fp32, spent, hit
    path = folder / f"{key}-opset{OPSET}-int8.onnx"
    if _cached(path):
        return path, spent, True
    return path, spent + quantize_int8(fp32, path, calibration), False
