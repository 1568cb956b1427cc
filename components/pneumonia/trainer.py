"""Drive Ray Train from the outside: start (or join) Ray, run one ``TorchTrainer``, and read back the
best weights and per-epoch history from its last checkpoint.

Running the same ``name`` under the same ``storage_path`` again resumes from the last checkpoint
(Ray Train restores it and the loop continues after that epoch). ``storage_path`` is a local folder
(one machine) or ``s3://bucket/prefix`` (:mod:`components.pneumonia.ray_storage`), which every pod of
a multi-pod RayJob reaches.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from components.pneumonia import ray_logging, ray_storage, train_loop


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


def failure_config():
    """No retries: a failed training loop fails the run, and so does a worker group that cannot start
    (Ray Train 2.60 retries a controller failure, such as a worker group start-up timeout, forever by
    default: a run that never ends and never says why). Resources are checked before ``fit`` instead."""
    from ray.train import FailureConfig

    return FailureConfig(max_failures=0, controller_failure_limit=0)


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
                 log_to_driver=True, configure_logging=False,
                 runtime_env={"worker_process_setup_hook": ray_logging.HOOK})
        started = True
    try:
        yield
    finally:
        ray.shutdown()  # stops the local Ray we started; only disconnects from a joined cluster
        del started


class InsufficientResources(RuntimeError):
    """The Ray cluster lacks what the run asks for: Ray Train would wait for it forever."""


def shortfall(num_workers: int, use_gpu: bool, cpus_per_worker: float, total: dict[str, float]) -> str | None:
    """What ``num_workers`` workers (each ``cpus_per_worker`` CPUs and, with ``use_gpu``, one GPU) need
    beyond the cluster's ``total`` resources, in words; None when it fits."""
    need = {"CPU": num_workers * cpus_per_worker, "GPU": float(num_workers if use_gpu else 0)}
    missing = [f"{need[kind]:g} {kind}s (the Ray cluster has {total.get(kind, 0.0):g})"
               for kind in ("GPU", "CPU") if need[kind] > total.get(kind, 0.0)]
    if not missing:
        return None
    return (f"{num_workers} Ray worker(s) with {cpus_per_worker:g} CPU{' and 1 GPU' if use_gpu else ''} each need "
            + " and ".join(missing) + ": lower num_workers" + (" to the number of GPUs" if use_gpu else "")
            + (" or set use_gpu=false" if use_gpu else "") + ", or give the cluster more")


def check_resources(num_workers: int, use_gpu: bool, cpus_per_worker: float, wait_s: float) -> None:
    """Fail at once (or after ``wait_s`` for nodes still joining a cluster) when the workers cannot all be
    placed: with ``use_gpu`` and more workers than GPUs, Ray Train retries worker start-up forever."""
    import time

    import ray

    if num_workers == 0:
        if use_gpu:
            import torch

            if not torch.cuda.is_available():
                raise InsufficientResources("use_gpu with num_workers=0 runs in this process, which sees no GPU")
        return
    deadline = time.monotonic() + wait_s
    while (missing := shortfall(num_workers, use_gpu, cpus_per_worker, ray.cluster_resources())) is not None:
        if time.monotonic() >= deadline:
            raise InsufficientResources(missing)
        time.sleep(2.0)


def fit(config: dict, num_workers: int, use_gpu: bool, storage_path: str, name: str,
        cpus_per_worker: float = 1.0, copy_to: str | None = None, resource_wait_s: float | None = None,
        s3=None) -> TrainOutcome:
    """Run the per-worker loop on ``num_workers`` Ray workers (0 = in this process) and return the
    best weights (copied to ``copy_to`` when given, else left in Ray's storage; an ``s3://``
    ``storage_path`` needs ``copy_to``). ``s3``: the S3 connection for an ``s3://`` storage, default the
    project's settings.

    The workers' resources are checked first (:func:`check_resources`): a local Ray has all it will
    ever have, so a shortfall fails at once; a joined cluster (``RAY_ADDRESS``, e.g. a RayJob's) gets
    ``resource_wait_s`` (default 300 s) for its worker pods to join."""
    import os

    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if resource_wait_s is None:
        resource_wait_s = 300.0 if os.environ.get("RAY_ADDRESS") else 0.0
    if s3 is None and ray_storage.is_s3(storage_path):
        from components.common.settings import get_settings

        s3 = get_settings().s3
    storage = ray_storage.resolve(storage_path, s3)
    if storage.remote and not copy_to:
        raise ValueError(f"an s3:// storage_path ({storage_path}) needs copy_to: the weights are read from a "
                         "local copy")
    check_resources(num_workers, use_gpu, cpus_per_worker, resource_wait_s)
    config = train_loop.resolve_config(config)
    resources = {"CPU": cpus_per_worker} | ({"GPU": 1} if use_gpu else {})
    trainer = TorchTrainer(
        train_loop.train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                     resources_per_worker=resources if num_workers else None),
        run_config=RunConfig(
            name=name,
            storage_path=storage.path,
            storage_filesystem=storage.filesystem,
            # every checkpoint carries the best weights so far; the last one is all we need
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            failure_config=failure_config(),
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
        if not storage.remote:
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
