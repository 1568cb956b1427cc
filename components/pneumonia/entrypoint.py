"""The training entry point: the same code runs inside the local pipeline step and as the entrypoint
of a KubeRay ``RayJob`` (``python -m components.pneumonia.entrypoint ...``), where it joins the
RayJob's cluster through ``RAY_ADDRESS`` instead of starting a local Ray.

It reads the split arrays, runs the Optuna search over Ray Train, and leaves in the output folder
``best_model.pt``, ``train_config.json``, ``history.json``, ``tuning.json`` and ``result.json``.
Ray Train's checkpoints go to ``--ray-storage`` (``s3://`` in a RayJob, so that worker pods reach them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from components.common import storage
from components.pneumonia import trainer, tuning
from components.pneumonia.settings import train_settings

RESULT = "result.json"


def train(splits_dir: Path, out_dir: Path, config: dict, n_trials: int, num_workers: int, use_gpu: bool,
          cpus_per_worker: float = 1.0, study_name: str = "pneumonia", optuna_storage: str | None = None,
          seed: int = 0, ray_storage: str | None = None) -> dict:
    out_dir = Path(out_dir)
    base = {k: v for k, v in config.items()} | {"data_dir": str(splits_dir), "seed": seed}
    with tempfile.TemporaryDirectory(prefix="pneumonia-train-") as work:
        num_cpus = max(1, num_workers) * cpus_per_worker
        with trainer.local_ray(num_cpus=max(1, int(round(num_cpus))), num_gpus=None):
            outcome = tuning.tune(base, n_trials, Path(work), num_workers=num_workers, use_gpu=use_gpu,
                                  cpus_per_worker=cpus_per_worker, study_name=study_name,
                                  storage=optuna_storage, seed=seed, ray_storage=ray_storage)
        out_dir.mkdir(parents=True, exist_ok=True)
        for item in Path(outcome.best.checkpoint_dir).iterdir():
            if item.name != "latest.pt":  # optimizer state: only needed to resume
                shutil.copy2(item, out_dir / item.name)
    result = outcome.summary() | {"best_epoch": outcome.best.best_epoch, "history": outcome.best.history,
                                  "trials_history": [t["history"] for t in outcome.trials]}
    (out_dir / RESULT).write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-uri", required=True, help="folder or s3:// URI of the split arrays")
    parser.add_argument("--output-uri", required=True, help="folder or s3:// URI for the trained model")
    parser.add_argument("--config", default="{}", help="training options as JSON (see train_loop.DEFAULTS)")
    parser.add_argument("--n-trials", type=int, default=1)
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--study-name", default="pneumonia")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ray-storage", default=train_settings().ray_storage,
                        help="folder or s3:// URI for Ray Train's checkpoints (CLINOPS_PNEUMONIA_RAY_STORAGE); "
                             "default: a temporary folder on this machine")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = storage.download_dir(args.data_uri, Path(tmp) / "data")
        out = Path(tmp) / "out"
        result = train(data, out, json.loads(args.config), args.n_trials, args.num_workers, args.use_gpu,
                       args.cpus_per_worker, args.study_name, None, args.seed, args.ray_storage)
        storage.upload_dir(out, args.output_uri)
    print(json.dumps({k: v for k, v in result.items() if "history" not in k}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
