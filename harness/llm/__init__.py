"""The LLM benchmark: requests (bench.py), one point's measurement (runner.py), engines, the decode loop, prompts.

May import: harness.errors, harness.inputs, harness.machine, harness.measure, harness.results.
"""
