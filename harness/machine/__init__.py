"""Facts about machines: devices found here, the spec table of nameplate peaks, provenance, published figures.

May import: harness.errors, harness.inputs.
"""
