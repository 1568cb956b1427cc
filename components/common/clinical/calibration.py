"""How far predicted probabilities are from observed frequencies, and the recalibration that closes the gap.

* ECE: the count-weighted mean |observed - predicted| over equal-width probability bins.
* Calibration slope: the coefficient of logit(p) in a logistic regression of the outcome on it (1 is
  ideal; below 1, predictions are too extreme). Calibration intercept (calibration-in-the-large): the
  intercept of that regression with the slope held at 1 (0 is ideal; above 0, risk is underestimated).
* Recalibration: Platt (a logistic regression on logit(p)) or isotonic regression, fitted on scores of
  patients the model did not train on; chosen by cross-validated Brier score on those scores and kept
  only when it lowers the Brier score there (otherwise ``identity``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss
from sklearn.model_selection import StratifiedKFold

EPS = 1e-6
IDENTITY, PLATT, ISOTONIC = "identity", "platt", "isotonic"
METHODS = (IDENTITY, PLATT, ISOTONIC)


def logit(p) -> np.ndarray:
    return special.logit(np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS))


def ece(y, p, bins: int = 10) -> float:
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        members = which == b
        total += members.sum() * abs(y[members].mean() - p[members].mean())
    return float(total / len(y))


def slope_and_intercept(y, p) -> tuple[float, float]:
    """(calibration slope, calibration-in-the-large intercept); (1, 0) for a calibrated model."""
    y = np.asarray(y).astype(int)
    z = logit(p)
    slope = float(LogisticRegression(C=np.inf).fit(z.reshape(-1, 1), y).coef_[0, 0])

    def loss(a: float) -> float:  # log-loss with logit(p) as an offset and slope fixed at 1
        return float(np.sum(np.logaddexp(0, z + a) - y * (z + a)))

    intercept = float(optimize.minimize_scalar(loss, bounds=(-10, 10), method="bounded").x)
    return slope, intercept


@dataclass(frozen=True)
class Recalibration:
    """A monotone map from the model's probability to the served one.

    ``platt``: ``sigmoid(a * logit(p) + b)``; ``isotonic``: piecewise-linear through ``(x, y)``, flat
    outside; ``identity``: ``p``. ``brier_before`` / ``brier_after``: on the scores it was fitted on."""

    method: str
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    brier_before: float | None = None
    brier_after: float | None = None
    n: int = 0

    def apply(self, p) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        if self.method == PLATT:
            return special.expit(self.a * logit(p) + self.b)
        if self.method == ISOTONIC:
            return np.interp(p, self.x, self.y)
        return p


def fit(method: str, y, p) -> Recalibration:
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    if method == PLATT:
        lr = LogisticRegression(C=np.inf).fit(logit(p).reshape(-1, 1), y)
        return Recalibration(PLATT, a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]), n=len(y))
    if method == ISOTONIC:
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return Recalibration(ISOTONIC, x=tuple(map(float, iso.X_thresholds_)), y=tuple(map(float, iso.y_thresholds_)),
                             n=len(y))
    if method == IDENTITY:
        return Recalibration(IDENTITY, n=len(y))
    raise ValueError(f"unknown recalibration {method!r}; one of {', '.join(METHODS)}")


def cross_validated_brier(method: str, y, p, folds: int = 5, seed: int = 0) -> float:
    """Brier score of ``method`` on each fold when fitted on the others (an honest choice between maps)."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    out = np.empty_like(p)
    for fit_idx, score_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(p, y):
        out[score_idx] = fit(method, y[fit_idx], p[fit_idx]).apply(p[score_idx])
    return float(brier_score_loss(y, out))


def choose(y, p, methods: tuple[str, ...] = (PLATT, ISOTONIC), seed: int = 0) -> Recalibration:
    """The recalibration with the lowest cross-validated Brier score on held-out scores ``p``, fitted on all of
    them; ``identity`` unless it beats leaving ``p`` alone both cross-validated and on ``p`` itself."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    before = float(brier_score_loss(y, p))
    folds = int(min(5, np.bincount(y, minlength=2).min()))
    best, best_score = IDENTITY, before
    if folds >= 2:
        for method in methods:
            score = cross_validated_brier(method, y, p, folds, seed)
            if score < best_score:
                best, best_score = method, score
    chosen = fit(best, y, p)
    after = float(brier_score_loss(y, chosen.apply(p)))
    # never serve a map that is worse where it was fitted, nor one that reverses the model's ranking
    if after > before or (chosen.method == PLATT and chosen.a <= 0):
        chosen, after = fit(IDENTITY, y, p), before
    return Recalibration(chosen.method, chosen.a, chosen.b, chosen.x, chosen.y, before, after, len(y))


def summary(y, p, bins: int = 10) -> dict[str, float]:
    slope, intercept = slope_and_intercept(y, p)
    return {"ece": ece(y, p, bins), "calibration_slope": slope, "calibration_intercept": intercept,
            "brier": float(brier_score_loss(np.asarray(y).astype(int), np.asarray(p, dtype=float)))}


def to_contract(recalibration: Recalibration, target_sensitivity: float | None = None,
                threshold: float | None = None, fitted_on: str = ""):
    """The bundle's ``calibration.json`` form (:class:`bundle.calibration.Calibration`) of a recalibration and
    the operating point chosen on the same held-out scores."""
    from bundle.calibration import Calibration, OperatingPoint

    point = None if threshold is None else OperatingPoint(float(target_sensitivity), float(threshold))
    return Calibration(recalibration.method, recalibration.a, recalibration.b, recalibration.x, recalibration.y,
                       point, fitted_on, recalibration.n, recalibration.brier_before, recalibration.brier_after)
