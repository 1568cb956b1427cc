"""Stratified bootstrap confidence intervals of the headline metrics.

Each resample draws, with replacement, as many positives from the positives and as many negatives from
the negatives as the sample holds, so prevalence is fixed and every resample has both classes (a plain
bootstrap of a small test split now and then draws no positive, and ROC-AUC is undefined there).
The percentile interval of the resampled statistics is reported. All statistics of one call are taken
on the same resamples, vectorised over them (ROC-AUC is the Mann-Whitney U statistic over n1·n0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
DEFAULT_RESAMPLES = 1000


@dataclass(frozen=True)
class Interval:
    value: float  # on the whole sample
    lower: float
    upper: float

    def covers(self, truth: float) -> bool:
        return self.lower <= truth <= self.upper

    def text(self, digits: int = 3) -> str:
        return f"{self.value:.{digits}f} ({self.lower:.{digits}f}–{self.upper:.{digits}f})"


@dataclass(frozen=True)
class Resamples:
    """``p_pos[b]`` / ``p_neg[b]``: the scores of the positives / negatives drawn in resample ``b``."""

    p_pos: np.ndarray  # [B, n1]
    p_neg: np.ndarray  # [B, n0]


def classes(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and scores {p.shape} must be one-dimensional and of one length")
    if not set(np.unique(y)) <= {0, 1}:
        raise ValueError("labels must be 0 or 1")
    return p[y == 1], p[y == 0]


def stratified_indices(y, n_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of ``n_resamples`` stratified resamples: (positives [B, n1], negatives [B, n0])."""
    y = np.asarray(y).astype(int)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("a stratified bootstrap needs both classes")
    rng = np.random.default_rng(seed)
    return (pos[rng.integers(0, len(pos), (n_resamples, len(pos)))],
            neg[rng.integers(0, len(neg), (n_resamples, len(neg)))])


# --- statistics of (scores of positives [B, n1], scores of negatives [B, n0], threshold) -> [B]

def roc_auc(pos: np.ndarray, neg: np.ndarray, threshold: float) -> np.ndarray:
    u = stats.mannwhitneyu(pos, neg, axis=-1, method="asymptotic", use_continuity=False).statistic
    return np.asarray(u, dtype=float) / (pos.shape[-1] * neg.shape[-1])


def sensitivity(pos, neg, threshold):
    return (pos >= threshold).mean(axis=-1)


def specificity(pos, neg, threshold):
    return (neg < threshold).mean(axis=-1)


def ppv(pos, neg, threshold):
    tp, fp = (pos >= threshold).sum(axis=-1), (neg >= threshold).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)


def npv(pos, neg, threshold):
    tn, fn = (neg < threshold).sum(axis=-1), (pos < threshold).sum(axis=-1)
    return np.where(tn + fn > 0, tn / np.maximum(tn + fn, 1), np.nan)


def accuracy(pos, neg, threshold):
    right = (pos >= threshold).sum(axis=-1) + (neg < threshold).sum(axis=-1)
    return right / (pos.shape[-1] + neg.shape[-1])


def brier(pos, neg, threshold):
    return (((1 - pos) ** 2).sum(axis=-1) + (neg ** 2).sum(axis=-1)) / (pos.shape[-1] + neg.shape[-1])


Statistic = Callable[[np.ndarray, np.ndarray, float], np.ndarray]
HEADLINE: dict[str, Statistic] = {"roc_auc": roc_auc, "sensitivity": sensitivity, "specificity": specificity,
                                  "ppv": ppv, "npv": npv, "accuracy": accuracy, "brier": brier}


def percentile_interval(value: float, resampled: np.ndarray, level: float = LEVEL) -> Interval:
    resampled = resampled[np.isfinite(resampled)]
    if resampled.size == 0:
        return Interval(value, float("nan"), float("nan"))
    alpha = (1 - level) / 2
    low, high = np.quantile(resampled, [alpha, 1 - alpha])
    return Interval(float(value), float(low), float(high))


def intervals(y, p, threshold: float, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
              statistics: dict[str, Statistic] | None = None, level: float = LEVEL) -> dict[str, Interval]:
    """Each statistic on the whole sample with its stratified-bootstrap percentile interval."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, not {n_resamples}")
    statistics = statistics or HEADLINE
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    pos, neg = classes(y, p)
    pos_idx, neg_idx = stratified_indices(y, n_resamples, seed)
    out = {}
    for name, statistic in statistics.items():
        value = float(statistic(pos[None, :], neg[None, :], threshold)[0])
        out[name] = percentile_interval(value, np.asarray(statistic(p[pos_idx], p[neg_idx], threshold)), level)
    return out
