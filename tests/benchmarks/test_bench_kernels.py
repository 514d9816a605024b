"""pytest-benchmark: each kernel and each peer on the same inputs, grouped by kernel.

Disabled by default (a plain `pytest` runs each once, as a smoke test); to measure:
    pytest tests/benchmarks --benchmark-enable
`modelpower kernels` prints the same comparison with ratios and bandwidth.
"""

import pytest

from harness.kernelbench import bench as kernel_bench


@pytest.fixture(scope="module")
def cases():
    return {
        c.name: c for c in kernel_bench.cases(scale=float(__import__("os").environ.get("MODELPOWER_BENCH_SCALE", "1")))
    }


PAIRS = [
    ("letterbox_normalize", "ours"),
    ("letterbox_normalize", "opencv"),
    ("letterbox_normalize", "torchvision v2"),
    ("batched_nms", "ours"),
    ("batched_nms", "torchvision.ops.batched_nms"),
    ("detect_postprocess", "ours"),
    ("detect_postprocess", "torch ops + batched_nms"),
    ("softmax_topk", "ours"),
    ("softmax_topk", "torch softmax+topk"),
    ("sample_tokens", "ours"),
    ("sample_tokens", "torch topk+softmax+multinomial"),
    ("seg_argmax", "ours"),
    ("seg_argmax", "torch argmax"),
    ("linear_rows (decode matmul)", "ours"),
    ("linear_rows (decode matmul)", "torch linear (bf16)"),
]


@pytest.mark.parametrize("kernel,impl", PAIRS, ids=[f"{k}-{i}" for k, i in PAIRS])
def test_kernel_benchmark(benchmark, cases, kernel, impl):
    case = cases[kernel]
    fn = case.ours if impl == "ours" else case.peers[impl]
    benchmark.group = kernel
    benchmark(fn)
