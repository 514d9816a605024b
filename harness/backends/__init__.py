"""The backend registry: one small module per backend behind one interface (`base.Backend`).

Adding a backend is adding a module and one entry in BACKENDS; `modelpower backends` and the tests
walk this dict.
"""

from harness.backends.base import Backend, BackendUnavailable, Prepared
from harness.backends.onnxruntime import OnnxRuntime
from harness.backends.torch_compile import TorchCompile
from harness.backends.torch_eager import TorchEager

BACKENDS: dict[str, Backend] = {
    "torch": TorchEager(),
    "torch-compile": TorchCompile(),
    "onnxruntime": OnnxRuntime(tensorrt=False),
    "onnxruntime-trt": OnnxRuntime(tensorrt=True),
}

__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "Prepared"]
