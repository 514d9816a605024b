"""What results mean for a buyer: claim checks, reports, the CI regression gate, cost.

May import: harness.errors, harness.inputs, harness.machine, harness.measure, harness.results.
"""
