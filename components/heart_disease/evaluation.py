"""Evaluate on the test split: metrics, plots and a model card."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from components.common.metrics import binary_metrics
from components.heart_disease.schema import FEATURES, SITE, TARGET

LABELS = ("no disease", "disease")


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


def model_card(metrics: dict[str, float], family: str, params: dict, cv_roc_auc: float, n_train: int,
               sites: dict[str, dict[str, float]]) -> str:
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

## Limitations
Sites measured different tests (e.g. `ca`, `thal` are mostly missing outside Cleveland), so
performance varies by site; the data are decades old and small. Monitor drift in production.
"""
