"""Optuna search over model family and hyperparameters, scored by cross-validated ROC-AUC on the
training split only; the best configuration is refitted on the whole training split.

The study lives in SQLite (``settings.optuna_storage``) under a name derived from the training data,
the seed and the CV settings, so an interrupted or repeated run resumes it instead of starting over.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass

import numpy as np
import optuna
import pandas as pd
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline

from components.common import locks
from components.heart_disease import model as model_lib
from components.heart_disease.schema import FEATURES, TARGET


@dataclass
class TrainResult:
    pipeline: Pipeline
    family: str
    params: dict
    cv_roc_auc: float
    study_name: str
    n_trials: int
    trials: pd.DataFrame


def suggest(trial: optuna.Trial) -> tuple[str, dict]:
    family = trial.suggest_categorical("family", list(model_lib.FAMILIES))
    if family == "logistic_regression":
        params = {"C": trial.suggest_float("lr_C", 1e-3, 10.0, log=True),
                  "l1_ratio": trial.suggest_float("lr_l1_ratio", 0.0, 1.0)}
    elif family == "random_forest":
        params = {"n_estimators": trial.suggest_int("rf_n_estimators", 100, 400, step=50),
                  "max_depth": trial.suggest_categorical("rf_max_depth", [None, 4, 6, 8, 12]),
                  "min_samples_leaf": trial.suggest_int("rf_min_samples_leaf", 1, 10),
                  "max_features": trial.suggest_float("rf_max_features", 0.1, 0.8)}
    else:
        params = {"n_estimators": trial.suggest_int("gb_n_estimators", 50, 400, step=25),
                  "learning_rate": trial.suggest_float("gb_learning_rate", 0.01, 0.3, log=True),
                  "max_depth": trial.suggest_int("gb_max_depth", 1, 4),
                  "subsample": trial.suggest_float("gb_subsample", 0.5, 1.0)}
    return family, params


def params_of(trial: optuna.trial.FrozenTrial) -> tuple[str, dict]:
    family = trial.params["family"]
    prefix = {"logistic_regression": "lr_", "random_forest": "rf_", "gradient_boosting": "gb_"}[family]
    return family, {k.removeprefix(prefix): v for k, v in trial.params.items() if k.startswith(prefix)}


def study_name(train: pd.DataFrame, seed: int, cv_folds: int) -> str:
    digest = hashlib.sha256(pd.util.hash_pandas_object(train[[*FEATURES, TARGET]], index=False).values.tobytes())
    digest.update(f"{seed}:{cv_folds}:{','.join(model_lib.FAMILIES)}".encode())
    return f"heart-disease-{digest.hexdigest()[:12]}"


def tune(train: pd.DataFrame, n_trials: int, seed: int, storage: str, cv_folds: int = 5,
         n_jobs: int = 1) -> TrainResult:
    X = train[FEATURES].to_numpy(dtype=float)
    y = train[TARGET].to_numpy(dtype=int)
    folds = StratifiedKFold(n_splits=cv_folds, shuffle=True, random_state=seed)

    def objective(trial: optuna.Trial) -> float:
        family, params = suggest(trial)
        scores = cross_val_score(model_lib.build(family, params, seed), X, y, cv=folds, scoring="roc_auc",
                                 n_jobs=n_jobs)
        trial.set_user_attr("cv_std", float(np.std(scores)))
        return float(np.mean(scores))

    name = study_name(train, seed, cv_folds)
    with locks.store_lock(storage) if storage else contextlib.nullcontext():  # concurrent runs: one schema set-up
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                    sampler=optuna.samplers.TPESampler(seed=seed))
    done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    remaining = max(n_trials - done, 0)
    print(f"train: study {name}: {done} finished trial(s) found, running {remaining} more", flush=True)
    if remaining:
        study.optimize(objective, n_trials=remaining, gc_after_trial=False)
    best = study.best_trial
    family, params = params_of(best)
    pipeline = model_lib.build(family, params, seed).fit(X, y)
    trials = study.trials_dataframe(attrs=("number", "value", "params", "state", "user_attrs"))
    print(f"train: best {family} {params} CV ROC-AUC {best.value:.4f}", flush=True)
    return TrainResult(pipeline, family, params, float(best.value), name, len(study.trials), trials)


def study_markdown(result: TrainResult, top: int = 10) -> str:
    done = result.trials[result.trials["state"] == "COMPLETE"].sort_values("value", ascending=False)
    lines = [f"# Optuna study `{result.study_name}`", "",
             f"- trials: {result.n_trials}", f"- best: **{result.family}**, CV ROC-AUC **{result.cv_roc_auc:.4f}**",
             f"- best parameters: `{result.params}`", "", "| trial | family | CV ROC-AUC |", "|---|---|---|"]
    for _, row in done.head(top).iterrows():
        lines.append(f"| {int(row['number'])} | {row['params_family']} | {row['value']:.4f} |")
    by_family = done.groupby("params_family")["value"].max()
    lines += ["", "Best per family: " + ", ".join(f"{k} {v:.4f}" for k, v in by_family.items())]
    return "\n".join(lines) + "\n"
