"""Performance by subgroup (sex, age band, site, image source): n, prevalence, ROC-AUC, sensitivity and
specificity at the served threshold, each with a stratified-bootstrap interval.

A group with fewer than ``MIN_PER_CLASS`` patients of either class gets no numbers, only the reason:
an AUC from 3 positives is noise that a reader would take for a finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from components.common.clinical import bootstrap

MIN_PER_CLASS = 5
METRICS = ("roc_auc", "sensitivity", "specificity")


@dataclass(frozen=True)
class Subgroup:
    attribute: str  # e.g. "sex"
    group: str  # e.g. "female"
    n: int
    positives: int
    intervals: dict[str, bootstrap.Interval] = field(default_factory=dict)
    too_small: str | None = None  # why there are no numbers

    @property
    def prevalence(self) -> float:
        return self.positives / self.n if self.n else float("nan")

    @property
    def key(self) -> str:
        """The group's name in flat metric names (``subgroup.<key>.<metric>``); MLflow-safe characters."""
        return f"{self.attribute}:{self.group}".replace(" ", "_")


def evaluate(attribute: str, labels, y, p, threshold: float, n_resamples: int, seed: int = 0,
             min_per_class: int = MIN_PER_CLASS) -> list[Subgroup]:
    """One :class:`Subgroup` per distinct value of ``labels`` (missing labels form no group)."""
    labels = np.asarray(labels, dtype=object)
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    out = []
    for group in sorted({g for g in labels if g is not None and g == g}, key=str):
        members = labels == group
        yg, pg = y[members], p[members]
        n, positives = int(members.sum()), int(yg.sum())
        if min(positives, n - positives) < min_per_class:
            out.append(Subgroup(attribute, str(group), n, positives,
                                too_small=f"{positives} with and {n - positives} without the condition; "
                                          f"at least {min_per_class} of each are needed"))
            continue
        stats = {name: bootstrap.HEADLINE[name] for name in METRICS}
        out.append(Subgroup(attribute, str(group), n, positives,
                            bootstrap.intervals(yg, pg, threshold, n_resamples, seed, stats)))
    return out


def flat_metrics(groups: list[Subgroup]) -> dict[str, float]:
    """``subgroup.<attribute>:<group>.<metric>`` (and ``.lower``) for every estimable group: what the gate's
    ``subgroup.<metric>.min`` floors read; ``.n`` and ``.positives`` for every group, so that the gate can name
    the groups too small to estimate that its subgroup floors pass over."""
    out = {}
    for g in groups:
        out[f"subgroup.{g.key}.n"], out[f"subgroup.{g.key}.positives"] = g.n, g.positives
        for name, interval in g.intervals.items():
            out[f"subgroup.{g.key}.{name}"] = interval.value
            out[f"subgroup.{g.key}.{name}.lower"] = interval.lower
    return out
