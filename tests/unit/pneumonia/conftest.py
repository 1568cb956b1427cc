"""Tiny chest X-ray datasets built in tmp_path, in both real formats."""

from __future__ import annotations

import numpy as np
import pytest

from components.pneumonia import phantom


@pytest.fixture
def kaggle_dir(tmp_path):
    """A small phantom set in the Kaggle layout, nested like the real archive."""
    root = tmp_path / "chest_xray" / "chest_xray"
    phantom.generate(root, phantom.PhantomSpec(counts={"train": 24, "val": 8, "test": 12}, size=48, seed=3))
    return tmp_path / "chest_xray"


@pytest.fixture
def write_medmnist():
    return _write_medmnist


def _write_medmnist(path, size: int = 28, rgb: bool = False, n: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split in ("train", "val", "test"):
        shape = (n, size, size, 3) if rgb else (n, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return path
