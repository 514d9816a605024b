"""Shared fixtures: small seeded images and a quiet, fast runner configuration."""

import numpy as np
import pytest
import torch

from harness.vision.runner import RunSettings


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def fast_settings():
    return RunSettings(device=torch.device("cpu"), warmup=1, min_duration=0.0, min_iters=2)
