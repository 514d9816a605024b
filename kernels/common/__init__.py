"""Kernel parts shared by the vision and LLM kernels: bit conversions (`bits`), the stable float sort
(`sort`), the counter-based random draw (`draw`), the vectorized exp sum (`fastexp`), row top-k on
the CPU (`rowtopk`) and on the GPU (`rowtopk_cuda`), and where arrays live (`device`).

May import: nothing else in kernels/ (numpy, numba and torch only).
"""
