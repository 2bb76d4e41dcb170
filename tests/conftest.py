"""Shared fixtures: the repository root, the committed miniature model, and WAV writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL = REPO_ROOT / "models" / "wav2vec2-tiny-random"


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return TINY_MODEL


def tone(seconds: float, sample_rate: int, frequency: float = 220.0, channels: int = 1) -> np.ndarray:
    """A decaying harmonic tone, (samples,) or (samples, channels), peak 0.5."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = sum(np.sin(2 * np.pi * frequency * k * t) / k for k in range(1, 6)) * np.exp(-t)
    wave = (0.5 * wave / np.abs(wave).max()).astype(np.float32)
    return np.stack([wave, 0.5 * wave], axis=1) if channels == 2 else wave


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = 48_000, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, sample_rate, subtype=subtype, format="WAV")
    return path
