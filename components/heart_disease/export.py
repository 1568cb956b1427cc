"""Assemble the heart-disease serving bundle, through the bundle contract's writer (layout: ``bundle.layout``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from bundle import BundleWriter, Manifest, layout
from bundle.calibration import Calibration
from bundle.drift import ScoreDrift, TabularDriftSettings, Window
from components.heart_disease.schema import CATEGORICAL, FEATURES, TARGET, serving_schema

WORKLOAD = "heart-disease"
REFERENCE_ROWS = 500
DRIFT_WINDOW = 50  # patients per verdict
SCORE_OUTPUT = "predict_proba"  # the sklearn predictor's output; column 1 is P(disease)
# False-positive budget of a window (measured by ``make eval-drift``): features at 0.015 (FDR over the 13),
# the model's P(disease) at 0.02 (Cramér-von Mises); a window drifts when either flags it. Measured on 100
# Cleveland-reference splits: about 4% of held-out Cleveland windows flagged at 20, 50 and 100 patients
# (0.02 / 0.03 gave 5.5-6%), 86% of 80%-prevalence windows of 50, every other-site window from 20 up.
FEATURES_P_VAL = 0.015
SCORE_P_VAL = 0.02
OOF_FOLDS = 5


def out_of_fold_scores(estimator, train: pd.DataFrame, folds: int = OOF_FOLDS, seed: int = 0) -> np.ndarray:
    """P(disease) of every training row from a copy of the model fitted without it: the scores the served
    model gives patients it has not seen (its own training rows would look more confident than any new
    patient, a false shift)."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = train[TARGET].astype(int).to_numpy()
    cv = StratifiedKFold(n_splits=min(folds, int(np.bincount(y).min())), shuffle=True, random_state=seed)
    return cross_val_predict(clone(estimator), train[FEATURES], y, cv=cv, method="predict_proba")[:, 1]


def drift_settings() -> TabularDriftSettings:
    """What the sidecar tests a window with: KS on numeric features, chi-square on categorical ones (NaN,
    missing, kept as information), FDR over the 13, and Cramér-von Mises on P(disease)."""
    return TabularDriftSettings(
        tuple(FEATURES), tuple(CATEGORICAL), p_val=FEATURES_P_VAL, correction="fdr", window=Window(size=DRIFT_WINDOW),
        score=ScoreDrift(SCORE_OUTPUT, column=1, p_val=SCORE_P_VAL))


def build_bundle(folder: Path, model_path: Path, train: pd.DataFrame, model_name: str, version: str,
                 threshold: float, metrics: dict | None = None, run_id: str | None = None, promoted: bool = False,
                 seed: int = 0, calibration: Calibration | None = None) -> Manifest:
    """Write ``model.joblib``, ``schema.json``, the drift reference, ``calibration.json`` (when given; its
    operating point's threshold is the schema's) and ``bundle.json`` into ``folder``. The drift reference
    score stays the model's own P(disease): the sidecar watches the predictor, before calibration."""
    writer = BundleWriter(folder, WORKLOAD, layout.SKLEARN, model_name, version)
    shutil.copyfile(model_path, writer.model_path)
    if calibration is not None and calibration.operating_point is not None:
        threshold = calibration.operating_point.threshold
    writer.write_schema(serving_schema(threshold=threshold))
    if calibration is not None:
        writer.write_calibration(calibration)
    import joblib

    sample = train.sample(n=min(REFERENCE_ROWS, len(train)), random_state=seed)
    scores = out_of_fold_scores(joblib.load(model_path), sample, seed=seed)
    np.savez_compressed(writer.drift_reference_path, x=sample[FEATURES].to_numpy(dtype=float),
                        score=scores.reshape(-1, 1))
    writer.write_drift(drift_settings())
    return writer.finish(metrics=metrics, mlflow_run_id=run_id, promoted=promoted)
