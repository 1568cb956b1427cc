"""The GPU code paths of the Ray Train loop, run on CPU through 2 gloo workers: bf16 autocast,
channels_last, fused AdamW, the training set sampled on the device, ``torch.compile`` (``aot_eager``)
under DDP, with checkpoints on S3 (the moto server) that a second run resumes from."""

from __future__ import annotations

import pytest
import torch

from components.pneumonia import model as model_lib
from components.pneumonia import trainer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GPU_PATHS = {"amp": True, "channels_last": True, "fused_optimizer": True, "device_data": True, "compile": True,
             "compile_backend": "aot_eager"}


def _objects(prefix: str) -> list[str]:
    from components.common.settings import get_settings

    bucket, _, key = prefix.partition("/")
    return [o.object_name for o in get_settings().s3.client().list_objects(bucket, prefix=key, recursive=True)]


def test_compiled_bf16_run_checkpoints_to_s3_and_resumes_from_it(tiny_splits, s3_server, ray_cluster, tmp_path,
                                                                 temp_leftovers):
    # batch 8 on 2 workers: 4 images each; validation (12 a worker, batches of 8) ends on a short batch
    config = {"data_dir": str(tiny_splits), "epochs": 2, "batch_size": 8, "patience": 0} | GPU_PATHS
    first = trainer.fit(config, num_workers=2, use_gpu=False, storage_path="s3://ray-runs/pneumonia",
                        name="gpu-paths", copy_to=str(tmp_path / "first"))
    assert [row["epoch"] for row in first.history] == [1, 2]
    assert all(row["batch_per_worker"] == 4 for row in first.history)
    # one graph set for training and one for evaluation, compiled in epoch 1; nothing recompiles after
    # (training batches are all full, evaluation pads its short last batch)
    compiled = [row["compiled_graphs"] for row in first.history]
    assert compiled[0] >= 2 and compiled[1] == compiled[0], compiled

    stored = _objects("ray-runs/pneumonia/gpu-paths/")
    assert any(name.endswith("/latest.pt") for name in stored), stored
    assert not (tmp_path / "ray").exists()  # nothing went to a local folder

    expected = set(model_lib.build_model("efficientnet_b0", 1, 2).state_dict())
    latest = torch.load(tmp_path / "first" / "latest.pt", map_location="cpu", weights_only=False)
    best = torch.load(tmp_path / "first" / "best_model.pt", map_location="cpu", weights_only=True)
    assert set(latest["model"]) == expected and set(best) == expected  # no module. / _orig_mod. prefixes

    # the compiled DDP run's checkpoint resumes into a plain model: the keys are the bare module's
    resumed = trainer.fit(config | {"epochs": 3, "compile": False}, num_workers=2, use_gpu=False,
                          storage_path="s3://ray-runs/pneumonia", name="gpu-paths", copy_to=str(tmp_path / "resumed"))
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    assert resumed.history[:2] == first.history
    assert temp_leftovers() == []  # the S3 checkpoints were read without leaving local copies
