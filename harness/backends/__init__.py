"""The backend registry: one small module per backend behind one interface (`base.Backend`).

Adding a backend is adding a module and one entry in BACKENDS; `modelpower backends` and the tests
walk this dict.

May import: harness.errors, harness.machine, harness.measure.
"""

import torch

from harness.backends.base import Backend, BackendUnavailable, Prepared
from harness.backends.onnxruntime import OnnxRuntime
from harness.backends.openvino import OpenVino
from harness.backends.torch_compile import TorchCompile
from harness.backends.torch_eager import TorchEager
from harness.errors import UserError
from harness.machine.devices import check_precision

BACKENDS: dict[str, Backend] = {
    "torch": TorchEager(),
    "torch-compile": TorchCompile(),
    "onnxruntime": OnnxRuntime(tensorrt=False),
    "onnxruntime-trt": OnnxRuntime(tensorrt=True),
    "openvino": OpenVino(),
}

__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "Prepared", "check_backend"]


def check_backend(name: str, device: torch.device, precision: str) -> None:
    """One clear line if a backend cannot run here or not at this precision."""
    try:
        BACKENDS[name].check(device, precision)
    except BackendUnavailable as e:
        raise UserError(str(e)) from None
    try:
        check_precision(device, precision, "fp32, bf16 (torch, openvino) or int8 (onnxruntime, openvino)")
    except UserError as e:
        raise UserError(f"{name}: {e}") from None
