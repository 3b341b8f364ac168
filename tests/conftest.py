"""Shared fixtures: the project's shared data folder and small generated audio."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

# Keep the suite predictable on the 2-core CI machine.
torch.set_num_threads(2)

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"shared test data not found at {SHARED} (expected ../shared beside the repo)")
    return SHARED


def make_tone(seconds: float = 1.0, sample_rate: int = 16000, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    """A tone with a little noise: real-valued audio for tests that need no speech."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    rng = np.random.default_rng(seed)
    wave = 0.3 * np.sin(2 * math.pi * freq * t) + 0.01 * rng.standard_normal(t.shape)
    return wave.astype(np.float32)
