"""Drive Ray Train from the outside: start (or join) Ray, run one ``TorchTrainer``, and read back the
best weights and per-epoch history from its last checkpoint.

Running the same ``name`` under the same ``storage_path`` again resumes from the last checkpoint
(Ray Train restores it and the loop continues after that epoch).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from components.pneumonia import train_loop


@dataclass
class TrainOutcome:
    config: dict
    best_val_auc: float
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    checkpoint_dir: str = ""  # local copy holding best_model.pt, latest.pt, history.json

    @property
    def best_model_path(self) -> Path:
        return Path(self.checkpoint_dir) / train_loop.BEST


@contextlib.contextmanager
def local_ray(num_cpus: int | None = None, num_gpus: int | None = None):
    """A Ray for this block: joins one that is already running (a RayJob's cluster, a test's),
    otherwise starts a local one and shuts it down afterwards."""
    import ray

    if ray.is_initialized():
        yield
        return
    import os

    started = False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=True)
    else:
        # address="local": always a fresh private instance, never someone else's running cluster
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 log_to_driver=True, configure_logging=False)
        started = True
    try:
        yield
    finally:
        ray.shutdown()  # stops the local Ray we started; only disconnects from a joined cluster
        del started


def fit(config: dict, num_workers: int, use_gpu: bool, storage_path: str, name: str,
        cpus_per_worker: float = 1.0, copy_to: str | None = None) -> TrainOutcome:
    """Run the per-worker loop on ``num_workers`` Ray workers (0 = in this process) and return the
    best weights (copied to ``copy_to`` when given, else left in Ray's storage)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    config = train_loop.resolve_config(config)
    resources = {"CPU": cpus_per_worker} | ({"GPU": 1} if use_gpu else {})
    trainer = TorchTrainer(
        train_loop.train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                     resources_per_worker=resources if num_workers else None),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            # every checkpoint carries the best weights so far; the last one is all we need
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            failure_config=FailureConfig(max_failures=0),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training run {name} reported no checkpoint")
    checkpoint = result.checkpoint
    if copy_to:
        target = Path(copy_to)
        if target.exists():
            shutil.rmtree(target)
        checkpoint.to_directory(str(target))  # straight there: no temporary copy left behind
        _drop_scratch(Path(checkpoint.path), Path(storage_path))
    else:
        target = Path(checkpoint.path)
    history = json.loads((target / train_loop.HISTORY).read_text())
    return TrainOutcome(config=config, best_val_auc=float(history[-1]["best_val_auc"]),
                        best_epoch=int(history[-1]["best_epoch"]), history=history, checkpoint_dir=str(target))


def _drop_scratch(checkpoint: Path, storage: Path) -> None:
    """Remove the last checkpoint folder when it lies outside Ray's storage: in-process runs
    (``num_workers=0``) report the loop's own temporary folder instead of uploading a copy."""
    if checkpoint.name.startswith(train_loop.SCRATCH_PREFIX) and not checkpoint.resolve().is_relative_to(
            storage.resolve()):
        shutil.rmtree(checkpoint, ignore_errors=True)
