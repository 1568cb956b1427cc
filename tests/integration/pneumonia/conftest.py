"""Tiny split arrays and a private local Ray for the pneumonia training tests."""

from __future__ import annotations

import pytest

from components.pneumonia import phantom, split, trainer


@pytest.fixture(scope="module")
def tiny_splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("pneumonia")
    phantom.generate(root / "raw", phantom.PhantomSpec(counts={"train": 48, "val": 24, "test": 16}, size=48))
    arrays, summary = split.build_splits(str(root / "raw"), split.SplitConfig(32, 32, 1, min_val=8))
    return split.save(arrays, summary, root / "splits")


@pytest.fixture
def ray_cluster(temp_leftovers):
    """A local Ray for one test, started inside the test's private TMPDIR: its workers inherit it, so
    what they leave in their temporary folder counts among the test's leftovers."""
    import ray

    assert not ray.is_initialized(), "a Ray started elsewhere would hand its own TMPDIR to the workers"
    with trainer.local_ray(num_cpus=2, num_gpus=0):  # CPU-only on a GPU machine too: the tests count GPUs
        yield
