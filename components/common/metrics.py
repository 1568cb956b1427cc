"""Binary-classification metrics shared by every workload, and their KFP artifact form."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def binary_metrics(y_true, p_positive, threshold: float = 0.5) -> dict[str, float]:
    y = np.asarray(y_true).astype(int)
    p = np.asarray(p_positive, dtype=float)
    if len(np.unique(y)) < 2:
        raise ValueError("metrics need both classes in y_true")
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)),
        "pr_auc": float(skm.average_precision_score(y, p)),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "brier": float(skm.brier_score_loss(y, p)),
        "sensitivity": float(tp / (tp + fn)) if tp + fn else 0.0,
        "specificity": float(tn / (tn + fp)) if tn + fp else 0.0,
        "threshold": float(threshold),
        "n": int(len(y)),
        "prevalence": float(y.mean()),
    }


def youden_threshold(y_true, p_positive) -> float:
    """The threshold maximising sensitivity + specificity - 1 (chosen on validation data)."""
    fpr, tpr, thresholds = skm.roc_curve(np.asarray(y_true).astype(int), np.asarray(p_positive, dtype=float))
    best = int(np.argmax(tpr - fpr))
    return float(min(max(thresholds[best], 0.0), 1.0))


def roc_points(y_true, p_positive, max_points: int = 200) -> tuple[list[float], list[float], list[float]]:
    """ROC curve thinned to at most ``max_points`` (KFP UI renders these)."""
    fpr, tpr, thr = skm.roc_curve(np.asarray(y_true).astype(int), np.asarray(p_positive, dtype=float))
    thr = np.clip(thr, 0.0, 1.0)  # sklearn's first threshold is +inf
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).astype(int))
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    return fpr.tolist(), tpr.tolist(), thr.tolist()


def log_to_kfp(metrics_artifact, classification_artifact, y_true, p_positive, threshold: float,
               labels: tuple[str, str], values: dict[str, float]) -> None:
    """Fill KFP ``Metrics`` and ``ClassificationMetrics`` so the KFP UI shows numbers, ROC and confusion.

    A metric without a value (NaN or infinite: a calibration slope of a model that answers one constant, an
    interval nobody could estimate) is left out of ``Metrics``: KFP stores metrics as protobuf ``Value``s,
    which cannot hold NaN, and the whole step would fail on it. MLflow and the model card still show it."""
    for name, value in values.items():
        if np.isfinite(float(value)):
            metrics_artifact.log_metric(name, float(value))
        else:
            print(f"  KFP metrics: {name} has no finite value ({float(value)}); left out of the run's Metrics")
    fpr, tpr, thr = roc_points(y_true, p_positive)
    classification_artifact.log_roc_curve(fpr, tpr, thr)
    pred = (np.asarray(p_positive) >= threshold).astype(int)
    matrix = skm.confusion_matrix(np.asarray(y_true).astype(int), pred, labels=[0, 1])
    classification_artifact.log_confusion_matrix(list(labels), matrix.tolist())
