"""Vision pre- and post-processing kernels: letterbox/resize/normalize (`letterbox`), box decoding and
NMS (`detect`), segmentation argmax (`segment`), softmax/top-k (`classify`).

Each `op.py` holds the NumPy reference (`*_ref`), the CPU kernel and the public function, which
checks its inputs and runs on the CPU or the GPU by where the input lives; `op_cuda.py` holds the
CUDA kernel and its launch.

May import: kernels.common.
"""
