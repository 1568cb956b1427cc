"""The Ray Train loop on 2 CPU workers with tiny data: per-epoch reports and checkpoints, resume,
early stopping, and the Optuna search around it."""

from __future__ import annotations

import json

import pytest

from components.pneumonia import trainer, tuning

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_cpu_workers_report_every_epoch_and_resume(tiny_splits, ray_cluster, tmp_path, temp_leftovers):
    config = {"data_dir": str(tiny_splits), "epochs": 2, "batch_size": 16, "patience": 0}
    first = trainer.fit(config, num_workers=2, use_gpu=False, storage_path=str(tmp_path / "ray"), name="resumable",
                        copy_to=str(tmp_path / "first"))
    assert [row["epoch"] for row in first.history] == [1, 2]
    for row in first.history:
        assert {"train_loss", "val_loss", "val_auc", "images_per_s", "lr"} <= set(row)
        assert row["images_per_s"] > 0 and 0.0 <= row["val_auc"] <= 1.0
    assert first.best_model_path.is_file() and (tmp_path / "first" / "latest.pt").is_file()
    assert json.loads((tmp_path / "first" / "train_config.json").read_text())["epochs"] == 2

    # Same run name and storage: Ray Train hands the last checkpoint back and the loop continues.
    resumed = trainer.fit(config | {"epochs": 3}, num_workers=2, use_gpu=False, storage_path=str(tmp_path / "ray"),
                          name="resumable", copy_to=str(tmp_path / "resumed"))
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    assert resumed.history[:2] == first.history
    assert temp_leftovers() == []  # no copies of checkpoints left behind, by the run or the resume


def test_early_stopping_in_process(tiny_splits, tmp_path, temp_leftovers):
    # lr 0: the weights never change (only BatchNorm statistics drift), so val AUC stalls quickly
    outcome = trainer.fit({"data_dir": str(tiny_splits), "epochs": 6, "lr": 0.0, "patience": 1, "augment": False,
                           "schedule": "cosine"}, num_workers=0, use_gpu=False,
                          storage_path=str(tmp_path / "ray"), name="stops", copy_to=str(tmp_path / "stops"))
    last = outcome.history[-1]
    assert len(outcome.history) < 6 and last["epoch"] - last["best_epoch"] == 1
    assert all(row["lr"] == 0.0 for row in outcome.history)
    assert temp_leftovers() == []  # in-process runs report the loop's own folders: none is left


def test_optuna_search_keeps_the_best_trial(tiny_splits, ray_cluster, tmp_path):
    outcome = tuning.tune({"data_dir": str(tiny_splits), "epochs": 1, "batch_size": 16}, n_trials=2,
                          work_dir=tmp_path, num_workers=2, study_name="tiny",
                          storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t["number"] for t in outcome.trials] == [0, 1]
    assert outcome.trials[0]["params"] == {"lr": 1e-3, "weight_decay": 1e-4, "dropout": 0.2}  # the defaults first
    assert outcome.best.best_val_auc == max(t["value"] for t in outcome.trials)
    assert (tmp_path / "best" / "best_model.pt").is_file() and (tmp_path / "best" / "tuning.json").is_file()
    assert not (tmp_path / "ray").exists() and not list(tmp_path.glob("trial-*"))


def test_more_gpu_workers_than_gpus_fail_at_once_naming_the_shortfall(tiny_splits, ray_cluster, tmp_path):
    """Ray Train would retry worker start-up forever (a silent hang); the check answers in seconds."""
    import time

    config = {"data_dir": str(tiny_splits), "epochs": 1, "batch_size": 16}
    started = time.monotonic()
    with pytest.raises(trainer.InsufficientResources, match=r"need 2 GPUs \(the Ray cluster has 0\)"):
        trainer.fit(config, num_workers=2, use_gpu=True, storage_path=str(tmp_path / "ray"), name="no-gpu")
    with pytest.raises(trainer.InsufficientResources, match=r"need 3 CPUs \(the Ray cluster has 2\)"):
        trainer.fit(config, num_workers=3, use_gpu=False, storage_path=str(tmp_path / "ray"), name="no-cpu")
    assert time.monotonic() - started < 30
    assert not (tmp_path / "ray").exists()  # refused before Ray Train started anything
