"""Where and how embed stores a clip's frames and layer summary; the training stages read them from there.

A module of its own so that the stages reading embeddings do not depend on the embedding code (a change to the
model code reruns embed, not the classifiers) and embed does not depend on the manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ravdess_ser.atomic import atomic_path

LAYER_SUMMARY_DIR = "layer_summary"


def layer_summary_path(embedding: Path) -> Path:
    """Where the layer summary of the clip whose frames are at ``embedding`` is stored."""
    return Path(embedding).parent / LAYER_SUMMARY_DIR / Path(embedding).name


def save_embedding(path: Path, features: np.ndarray, storage: str) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, features.astype(storage, copy=False))
