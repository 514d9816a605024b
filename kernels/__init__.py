"""Numba kernels for the hot pre- and post-processing paths, each beside its plain NumPy reference.

- `kernels/vision/`: letterbox, detect (decode + NMS), segment, classify;
- `kernels/llm/`: gemv, qgemv (GGUF blocks), norm, attention, step (a whole decode step), sample;
- `kernels/common/`: what both use (bit conversions, sorting, the random draw, exp, row top-k,
  device helpers).
`op.py` holds an op's NumPy reference and CPU kernel, `op_cuda.py` its CUDA kernel. Public functions
pick the implementation; `*_ref` functions are the NumPy references the tests compare against. No
module imports another's private (`_`) names (tests/test_layers.py checks).

Numba's threading layer is OpenMP first (then TBB, then its workqueue) unless NUMBA_THREADING_LAYER or
NUMBA_THREADING_LAYER_PRIORITY says otherwise: Numba's own default tries TBB first, and OpenVINO brings
libtbb into the process, so importing openvino before the first parallel kernel silently switched every
kernel to TBB (not what the kernels were measured with; TBB warns on each fork from a worker thread).
"""

import os

import numba

if not {"NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY"} & set(os.environ):
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]

from kernels.llm.sample import sample_tokens, sample_tokens_ref
from kernels.vision.classify import softmax_topk, softmax_topk_ref
from kernels.vision.detect import (
    batched_nms,
    batched_nms_ref,
    detect_postprocess,
    detect_postprocess_ref,
    yolo_postprocess,
    yolo_postprocess_ref,
)
from kernels.vision.letterbox import letterbox_geometry, letterbox_normalize, letterbox_normalize_ref
from kernels.vision.segment import seg_argmax, seg_argmax_ref

__all__ = [
    "batched_nms",
    "batched_nms_ref",
    "detect_postprocess",
    "detect_postprocess_ref",
    "letterbox_geometry",
    "letterbox_normalize",
    "letterbox_normalize_ref",
    "sample_tokens",
    "sample_tokens_ref",
    "seg_argmax",
    "seg_argmax_ref",
    "softmax_topk",
    "softmax_topk_ref",
    "yolo_postprocess",
    "yolo_postprocess_ref",
]
