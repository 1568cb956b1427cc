"""Hyperparameter search: Optuna around the Ray Train trainer (one ``TorchTrainer`` run per trial).

Trial 0 is always the given base configuration, so one trial means "train with the defaults".
Each trial's objective is its best validation ROC-AUC; the best trial's checkpoint is the model.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from components.common import locks
from components.common.settings import get_settings
from components.pneumonia import ray_storage as ray_storage_lib
from components.pneumonia import trainer


@dataclass(frozen=True)
class SearchSpace:
    lr: tuple[float, float] = (3e-4, 3e-3)
    weight_decay: tuple[float, float] = (1e-6, 1e-2)
    dropout: tuple[float, float] = (0.1, 0.5)

    def suggest(self, trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", *self.lr, log=True),
            "weight_decay": trial.suggest_float("weight_decay", *self.weight_decay, log=True),
            "dropout": trial.suggest_float("dropout", *self.dropout),
        }


@dataclass
class TuneOutcome:
    best: trainer.TrainOutcome
    best_trial: int
    trials: list[dict] = field(default_factory=list)  # number, params, value, epochs, history
    study_name: str = ""

    def summary(self) -> dict:
        return {"study_name": self.study_name, "best_trial": self.best_trial, "best_val_auc": self.best.best_val_auc,
                "best_params": {k: self.best.config[k] for k in ("lr", "weight_decay", "dropout")},
                "trials": [{k: t[k] for k in ("number", "params", "value", "epochs")} for t in self.trials]}


def tune(base_config: dict, n_trials: int, work_dir: Path, *, num_workers: int = 2, use_gpu: bool = False,
         cpus_per_worker: float = 1.0, study_name: str = "pneumonia", storage: str | None = None,
         seed: int = 0, space: SearchSpace = SearchSpace(), ray_storage: str | None = None) -> TuneOutcome:
    """Run ``n_trials`` trainings; keep the best one's checkpoint under ``work_dir/best``.

    ``ray_storage``: where Ray Train checkpoints each trial (``s3://`` for a multi-pod RayJob); default
    ``work_dir/ray``. A finished search removes its trials' runs there; an interrupted one leaves them,
    so the same study resumes its trial from the last checkpoint."""
    import optuna

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    ray_storage = ray_storage or str(work_dir / "ray")
    if storage and storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with locks.store_lock(storage) if storage else contextlib.nullcontext():  # concurrent runs: one schema set-up
        study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=seed), load_if_exists=True)
    defaults = trainer.train_loop.resolve_config(base_config)
    study.enqueue_trial({k: defaults[k] for k in ("lr", "weight_decay", "dropout")}, skip_if_exists=True)

    trials: list[dict] = []
    best: dict = {}

    def objective(trial) -> float:
        params = space.suggest(trial)
        config = base_config | params | {"trial": trial.number}
        print(f"trial {trial.number}: " + ", ".join(f"{k}={v:.3g}" for k, v in params.items()), flush=True)
        target = work_dir / f"trial-{trial.number}"
        outcome = trainer.fit(config, num_workers, use_gpu, ray_storage, f"{study_name}-trial-{trial.number}",
                              cpus_per_worker=cpus_per_worker, copy_to=str(target))
        value = outcome.best_val_auc
        trials.append({"number": trial.number, "params": params, "value": value,
                       "epochs": len(outcome.history), "history": outcome.history})
        if not best or value > best["value"]:
            if best:
                shutil.rmtree(best["outcome"].checkpoint_dir, ignore_errors=True)
            best.update(value=value, number=trial.number, outcome=outcome)
        else:
            shutil.rmtree(target, ignore_errors=True)  # only the best trial's weights are kept
        print(f"trial {trial.number}: best val AUC {value:.4f} (epoch {outcome.best_epoch})", flush=True)
        return value

    study.optimize(objective, n_trials=n_trials, gc_after_trial=True)
    final = work_dir / "best"
    if final.exists():
        shutil.rmtree(final)
    shutil.move(best["outcome"].checkpoint_dir, final)
    best["outcome"].checkpoint_dir = str(final)
    if ray_storage_lib.is_s3(ray_storage):
        runs = ray_storage_lib.resolve(ray_storage, get_settings().s3)
        for trial in trials:
            runs.delete_run(f"{study_name}-trial-{trial['number']}")
    else:
        shutil.rmtree(ray_storage, ignore_errors=True)
    outcome = TuneOutcome(best["outcome"], best["number"], trials, study_name)
    (final / "tuning.json").write_text(json.dumps(outcome.summary(), indent=2))
    return outcome


def log_trials(result: dict, experiment: str, run_name: str) -> str:
    """A parent MLflow run for the search with one nested run per trial and its per-epoch curves.

    ``result`` is the entry point's ``result.json`` (:meth:`TuneOutcome.summary` + histories), so the
    same logging serves local runs and RayJobs."""
    import mlflow

    from components.common import registry

    registry.configure(experiment)
    with mlflow.start_run(run_name=run_name, tags={"step": "tuning"}) as parent:
        mlflow.log_params({"n_trials": len(result["trials"]), "best_trial": result["best_trial"],
                           **{f"best_{k}": v for k, v in result["best_params"].items()}})
        mlflow.log_metric("best_val_auc", float(result["best_val_auc"]))
        for trial, history in zip(result["trials"], result["trials_history"], strict=True):
            with mlflow.start_run(run_name=f"trial-{trial['number']}", nested=True):
                mlflow.log_params(trial["params"])
                for row in history:
                    mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
                mlflow.log_metric("best_val_auc", float(trial["value"]))
        return parent.info.run_id
