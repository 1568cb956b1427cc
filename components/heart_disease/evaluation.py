"""Evaluate on the test split: metrics, plots and a model card, with the clinical assessment
(:mod:`components.common.clinical`): intervals, subgroups by sex, age band and site, calibration on
out-of-fold training scores, the threshold for a target sensitivity, and the repeated cross-validation
estimate beside the single split."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from components.common.clinical import assessment as clinical
from components.common.clinical import card as clinical_card
from components.common.metrics import binary_metrics
from components.heart_disease.schema import FEATURES, SITE, TARGET

LABELS = ("no disease", "disease")
CV_REPEATS = 2  # repeats x folds refits of the chosen model: ~10 fits, a few seconds on 2 cores
CV_FOLDS = 5
AGE_BANDS = ("under-45", "45-60", "over-60")  # <45, 45–60, >60 years
# register logs the test split's metrics as test_<name> (beside cv_roc_auc); the gate reads a champion's so
TEST_METRIC_PREFIX = "test_"


def predict(pipeline, frame: pd.DataFrame) -> np.ndarray:
    return pipeline.predict_proba(frame[FEATURES].to_numpy(dtype=float))[:, 1]


def evaluate(pipeline, test: pd.DataFrame, threshold: float = 0.5) -> tuple[dict[str, float], np.ndarray]:
    p = predict(pipeline, test)
    return binary_metrics(test[TARGET].to_numpy(dtype=int), p, threshold), p


def per_site(test: pd.DataFrame, p: np.ndarray, threshold: float) -> dict[str, dict[str, float]]:
    out = {}
    for site, idx in test.groupby(SITE).groups.items():
        y = test.loc[idx, TARGET].to_numpy(dtype=int)
        if len(np.unique(y)) == 2:
            m = binary_metrics(y, p[test.index.get_indexer(idx)], threshold)
            out[str(site)] = {"n": m["n"], "roc_auc": m["roc_auc"], "accuracy": m["accuracy"]}
    return out


def repeated_cv(estimator, train: pd.DataFrame, repeats: int = CV_REPEATS, folds: int = CV_FOLDS,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold P(disease) of every training row per repeat ``[repeats, n]``, and the ROC-AUC of every
    fold ``[repeats * folds]``: the held-out scores that calibration and the threshold are fitted on, and the
    repeated cross-validation estimate of the chosen configuration (optimistic by the search that chose it)."""
    from sklearn.base import clone
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    X = train[FEATURES].to_numpy(dtype=float)
    y = train[TARGET].to_numpy(dtype=int)
    oof = np.empty((repeats, len(y)))
    aucs = []
    for r in range(repeats):
        for fit_idx, held_idx in StratifiedKFold(folds, shuffle=True, random_state=seed + r).split(X, y):
            model = clone(estimator).fit(X[fit_idx], y[fit_idx])
            oof[r, held_idx] = model.predict_proba(X[held_idx])[:, 1]
            aucs.append(roc_auc_score(y[held_idx], oof[r, held_idx]))
    return oof, np.asarray(aucs)


def age_band(age) -> np.ndarray:
    age = np.asarray(age, dtype=float)
    return np.select([age < 45, age <= 60, age > 60], list(AGE_BANDS), default=None).astype(object)


def subgroup_labels(test: pd.DataFrame) -> dict[str, np.ndarray]:
    sex = test["sex"].map({0: "female", 1: "male"}).astype(object).where(test["sex"].notna(), None)
    return {"sex": sex.to_numpy(dtype=object), "age": age_band(test["age"]),
            "site": test[SITE].astype(object).to_numpy() if SITE in test else np.full(len(test), None, object)}


def assess(pipeline, train: pd.DataFrame, test: pd.DataFrame, target_sensitivity: float, n_resamples: int,
           seed: int = 0, repeats: int = CV_REPEATS) -> tuple[clinical.Assessment, np.ndarray]:
    """The clinical assessment on ``test``, calibrated and thresholded on out-of-fold training scores; also
    the fold ROC-AUCs of the repeated cross-validation."""
    oof, fold_aucs = repeated_cv(pipeline, train, repeats, seed=seed)
    result = clinical.assess(test[TARGET].to_numpy(dtype=int), predict(pipeline, test),
                             train[TARGET].to_numpy(dtype=int), oof[0], target_sensitivity,
                             groups=subgroup_labels(test), n_resamples=n_resamples, seed=seed)
    return result, fold_aucs


def outer_estimate(fold_aucs: np.ndarray, repeats: int = CV_REPEATS) -> str:
    low, high = np.quantile(fold_aucs, [0.025, 0.975])
    return (f"Repeated cross-validation of the chosen model on the training split ({repeats}×{CV_FOLDS} folds): "
            f"ROC-AUC {fold_aucs.mean():.3f} (fold range {low:.3f}–{high:.3f}); it re-uses the data the search "
            f"chose on, so it is optimistic by that choice.")


def model_card(metrics: dict[str, float], family: str, params: dict, cv_roc_auc: float, n_train: int,
               sites: dict[str, dict[str, float]], clinical_result: clinical.Assessment | None = None,
               outer: str | None = None) -> str:
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items() if isinstance(v, float))
    site_rows = "\n".join(f"| {s} | {v['n']} | {v['roc_auc']:.3f} | {v['accuracy']:.3f} |" for s, v in sites.items())
    return f"""# Model card — heart-disease risk

*Generated {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}*

## Intended use
Estimates the probability of angiographic coronary artery disease (UCI `num > 0`) from 13 routine
clinical features, to support — never replace — a clinician's triage. Not validated for screening
of asymptomatic populations or for patients outside the age range of the training data.

## Model
- Family: **{family}**; hyperparameters: `{params}`
- Preprocessing inside the same sklearn Pipeline: median imputation with missingness indicators and
  scaling for numeric features; missing-as-category one-hot encoding for categorical features.
- Selected by Optuna on 5-fold cross-validated ROC-AUC on the training split: **{cv_roc_auc:.4f}**.

## Data
UCI Heart Disease (Cleveland, Hungary, Switzerland, VA Long Beach), {n_train} training patients.
Values that cannot be physiologically real (e.g. cholesterol 0) are treated as missing.

## Test-split performance (threshold {metrics.get('threshold', 0.5):.2f})
| metric | value |
|---|---|
{rows}

## By site
| site | n | ROC-AUC | accuracy |
|---|---|---|---|
{site_rows}

{clinical_card.markdown(clinical_result, outer) if clinical_result is not None else ""}
## Limitations
Sites measured different tests (e.g. `ca`, `thal` are mostly missing outside Cleveland), so
performance varies by site; the data are decades old and small. Monitor drift in production.
"""
