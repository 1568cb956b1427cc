"""Challenger against champion on the same patients: a paired stratified bootstrap of the difference in
ROC-AUC. Both models are scored on each resample's patients, so what the two share (which patients
happened to be in the test split) cancels, and the interval is much narrower than the two separate ones.

The challenger takes over only when the difference is above zero and its lower bound is above
``-margin`` (not worse beyond noise; a non-inferiority margin, 0.02 ROC-AUC by default): an identical
challenger (difference exactly 0) never replaces the champion, so a re-run of one model cannot churn the alias.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.common.clinical import bootstrap

DEFAULT_MARGIN = 0.02


@dataclass(frozen=True)
class PairedComparison:
    metric: str
    challenger: float
    champion: float
    difference: bootstrap.Interval  # challenger - champion
    margin: float
    n_resamples: int = bootstrap.DEFAULT_RESAMPLES

    @property
    def challenger_wins(self) -> bool:
        return self.difference.value > 0 and self.difference.lower > -self.margin

    def reason(self, champion_version: str) -> str:
        d = self.difference
        where = (f"{self.metric} {self.challenger:.4f} vs champion v{champion_version} {self.champion:.4f} on the same "
                 f"patients: difference {d.value:+.4f} (95% CI {d.lower:+.4f} to {d.upper:+.4f}, paired bootstrap of "
                 f"{self.n_resamples} resamples, margin {self.margin})")
        if self.challenger_wins:
            return f"{where}: better, and not worse beyond noise"
        if d.value == 0 and d.lower == 0 and d.upper == 0:
            return f"{where}: identical to the champion; champion kept"
        if d.value <= 0:
            return f"{where}: not better than the champion; champion kept"
        return f"{where}: may be worse by more than the margin; champion kept"


def compare_roc_auc(y, p_challenger, p_champion, n_resamples: int = bootstrap.DEFAULT_RESAMPLES, seed: int = 0,
                    margin: float = DEFAULT_MARGIN) -> PairedComparison:
    """The gates pass the evaluate step's ``n_resamples`` and ``seed`` (its ``bootstrap_resamples`` setting,
    :func:`components.common.clinical.assessment.read_settings`), so the comparison is as fine as the intervals."""
    y = np.asarray(y).astype(int)
    p_new = np.asarray(p_challenger, dtype=float)
    p_old = np.asarray(p_champion, dtype=float)
    if p_new.shape != y.shape or p_old.shape != y.shape:
        raise ValueError(f"paired comparison needs both models' scores on the same {len(y)} patients, "
                         f"got {p_new.shape} and {p_old.shape}")
    pos_idx, neg_idx = bootstrap.stratified_indices(y, n_resamples, seed)
    auc = bootstrap.roc_auc
    new_value = float(auc(p_new[y == 1][None], p_new[y == 0][None], 0.5)[0])
    old_value = float(auc(p_old[y == 1][None], p_old[y == 0][None], 0.5)[0])
    resampled = auc(p_new[pos_idx], p_new[neg_idx], 0.5) - auc(p_old[pos_idx], p_old[neg_idx], 0.5)
    return PairedComparison("roc_auc", new_value, old_value,
                            bootstrap.percentile_interval(new_value - old_value, resampled), margin, n_resamples)
