"""Measurement primitives: timing, windows, statistics, energy meters, memory, FLOPs, derived
metrics, agreement with a reference, and the device peak probes. No benchmark suite and no model:
the kernel benchmark lives in harness/kernelbench/.

May import: harness.errors, harness.inputs, harness.machine.
"""
