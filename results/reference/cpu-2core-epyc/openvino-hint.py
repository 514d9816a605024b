"""OpenVINO's LATENCY against its THROUGHPUT hint with one batch of 8 in flight: both compiled, interleaved
rounds, median ms per batch. Usage: python openvino-hint.py MODEL.onnx... (the fp32 exports modelpower caches
in ~/.cache/modelpower/onnx); the 2026-12-07 output is openvino-hint.txt beside this file."""

import statistics
import sys
import time

import numpy as np
import openvino as ov

core = ov.Core()
x = np.random.default_rng(0).standard_normal((8, 3, 224, 224)).astype(np.float32)
for path in sys.argv[1:]:
    requests = {}
    for hint in ("LATENCY", "THROUGHPUT"):
        compiled = core.compile_model(core.read_model(path), "CPU", {"PERFORMANCE_HINT": hint,
                                                                     "INFERENCE_PRECISION_HINT": "f32"})  # fmt: skip
        requests[hint] = compiled.create_infer_request()
        requests[hint].infer({0: x})
    times = {hint: [] for hint in requests}
    for _ in range(7):
        for hint, request in requests.items():
            t = time.perf_counter()
            for _ in range(3):
                request.infer({0: x})
            times[hint].append((time.perf_counter() - t) / 3 * 1e3)
    print(path.split("/")[-1], {hint: round(statistics.median(v), 1) for hint, v in times.items()})
