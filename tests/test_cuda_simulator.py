"""Runs tests/cuda under Numba's CUDA simulator in a fresh process, so CPU-only CI tests the CUDA code."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a second pytest process, every kernel under the simulator


def test_cuda_kernels_under_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    folder = Path(__file__).parent / "cuda"
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "skipped" not in r.stdout.splitlines()[-1], r.stdout[-2000:]
