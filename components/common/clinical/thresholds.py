"""Operating points and decision curves.

The served threshold has a clinical meaning: the highest threshold whose sensitivity on scores of
patients the model did not train on reaches a target (e.g. 0.90: at most one diseased patient in ten
missed). A decision curve gives the net benefit of treating by the model at each threshold probability
pt, ``TP/n - FP/n * pt/(1-pt)``, against treating everyone and treating no one (Vickers & Elkin, 2006).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_curve

DEFAULT_TARGETS = (0.90, 0.95)


@dataclass(frozen=True)
class OperatingPoint:
    target_sensitivity: float
    threshold: float
    sensitivity: float
    specificity: float


def threshold_for_sensitivity(y, p, target: float) -> float:
    """The highest threshold at which ``p >= threshold`` flags at least ``target`` of the positives."""
    if not 0 < target <= 1:
        raise ValueError(f"target sensitivity must be in (0, 1], not {target}")
    _, tpr, thresholds = roc_curve(np.asarray(y).astype(int), np.asarray(p, dtype=float), drop_intermediate=False)
    reached = np.flatnonzero(tpr >= target - 1e-12)[0]  # tpr rises as the threshold falls
    return float(min(thresholds[reached], 1.0))


def at_threshold(y, p, threshold: float) -> tuple[float, float]:
    y = np.asarray(y).astype(int)
    flagged = np.asarray(p, dtype=float) >= threshold
    return float(flagged[y == 1].mean()), float((~flagged[y == 0]).mean())


def operating_points(y, p, targets=DEFAULT_TARGETS, choose_on: tuple | None = None) -> list[OperatingPoint]:
    """For each target sensitivity, the threshold (chosen on ``choose_on = (y, p)`` when given, else on
    ``y, p`` themselves) and the sensitivity and specificity it gives on ``y, p``."""
    y_choose, p_choose = choose_on if choose_on is not None else (y, p)
    points = []
    for target in targets:
        threshold = threshold_for_sensitivity(y_choose, p_choose, target)
        points.append(OperatingPoint(float(target), threshold, *at_threshold(y, p, threshold)))
    return points


@dataclass(frozen=True)
class DecisionCurve:
    thresholds: np.ndarray
    model: np.ndarray
    treat_all: np.ndarray
    treat_none: np.ndarray

    def useful_range(self) -> tuple[float, float] | None:
        """Threshold probabilities where the model beats both treating all and treating none."""
        better = (self.model > self.treat_all) & (self.model > self.treat_none)
        return (float(self.thresholds[better].min()), float(self.thresholds[better].max())) if better.any() else None


def decision_curve(y, p, thresholds=None) -> DecisionCurve:
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    pts = np.linspace(0.01, 0.99, 99) if thresholds is None else np.asarray(thresholds, dtype=float)
    n, prevalence = len(y), y.mean()
    odds = pts / (1 - pts)
    flagged = p[None, :] >= pts[:, None]
    tp = (flagged & (y == 1)).sum(axis=1) / n
    fp = (flagged & (y == 0)).sum(axis=1) / n
    return DecisionCurve(pts, tp - fp * odds, prevalence - (1 - prevalence) * odds, np.zeros_like(pts))
