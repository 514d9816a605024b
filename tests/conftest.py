"""Shared fixtures: small seeded images, a quiet, fast runner configuration, and the CLI as a user
calls it. Plain helpers (result points, checkpoints, the one-line error check) are in helpers.py."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from harness.cli import app
from harness.vision.runner import RunSettings


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def fast_settings():
    return RunSettings(device=torch.device("cpu"), warmup=1, min_duration=0.0, min_iters=2)


@pytest.fixture(scope="session")
def invoke():
    """`invoke("run", preset, "--out", tmp_path)`: runs `modelpower` in-process, every argument as a
    string. Session-scoped, so module-scoped fixtures and hypothesis tests can use it too."""
    runner = CliRunner()

    def call(*args):
        return runner.invoke(app, [str(a) for a in args])

    return call
