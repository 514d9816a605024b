"""The kernel benchmark behind `modelpower kernels`: our Numba kernels against the libraries people
would otherwise use (`peers`: OpenCV, torchvision, torch, written as well as their documentation
allows) on the same inputs in one run (`bench`). The vision benchmark runs the same peers as its
`--pipeline peers` reference.

May import: harness.errors, harness.machine, harness.measure.
"""
