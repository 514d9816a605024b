"""Measurement primitives: timing, windows, statistics, energy meters, memory, FLOPs, derived
metrics, agreement with a reference, and the peak and kernel probes.

May import: harness.errors, harness.inputs, harness.machine.
"""
