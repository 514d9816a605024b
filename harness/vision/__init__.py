"""The vision benchmark: requests (bench.py), points (runner.py), LoadGen, torchrun, images,
ONNX files run as they are or in our pipeline, detection outputs.

May import: harness.errors, harness.inputs, harness.machine, harness.measure, harness.results, harness.backends,
harness.kernelbench.
"""
