"""The result schema (schema.py, versioned) and one run's result file from first write to last
(session.py: the lifecycle, sinks, progress events, stop signals).

May import: harness.errors, harness.inputs, harness.machine, harness.measure.
"""
