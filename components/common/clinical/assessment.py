"""One workload-neutral clinical assessment of a model on its test split: the served probability
(recalibrated on held-out scores when that helps), the threshold for a target sensitivity (chosen on the
held-out scores, never on the test split), every headline metric with its interval, calibration before
and after, operating points, the decision curve and the subgroups. :meth:`Assessment.flat_metrics` is
the flat form MLflow, KFP ``Metrics`` and the gate's floors read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.common.clinical import bootstrap, calibration, subgroups, thresholds
from components.common.metrics import binary_metrics

DEFAULT_TARGET_SENSITIVITY = 0.90
SETTINGS_FILE = "assessment.json"  # in the evaluation artifact: the bootstrap settings the gate reuses


@dataclass
class Assessment:
    y: np.ndarray
    p_model: np.ndarray  # the model's own probability on the test split
    p: np.ndarray  # the served probability (after recalibration)
    recalibration: calibration.Recalibration
    target_sensitivity: float
    threshold: float
    metrics: dict[str, float]  # point values at the threshold (components.common.metrics.binary_metrics)
    intervals: dict[str, bootstrap.Interval]
    calibration_model: dict[str, float]  # of p_model
    calibration_served: dict[str, float]  # of p
    operating_points: list[thresholds.OperatingPoint]
    decision_curve: thresholds.DecisionCurve
    subgroups: dict[str, list[subgroups.Subgroup]] = field(default_factory=dict)
    no_subgroups: dict[str, str] = field(default_factory=dict)  # attribute -> why it could not be formed
    n_resamples: int = bootstrap.DEFAULT_RESAMPLES

    def flat_metrics(self) -> dict[str, float]:
        out = dict(self.metrics)
        for name, interval in self.intervals.items():
            out[name] = interval.value
            out[f"{name}.lower"], out[f"{name}.upper"] = interval.lower, interval.upper
        out |= self.calibration_served
        out |= {f"{k}_uncalibrated": v for k, v in self.calibration_model.items()}
        out["target_sensitivity"] = self.target_sensitivity
        for point in self.operating_points:
            tag = f"{point.target_sensitivity:.2f}"
            out[f"threshold_at_sensitivity_{tag}"] = point.threshold
            out[f"sensitivity_at_sensitivity_{tag}"] = point.sensitivity
            out[f"specificity_at_sensitivity_{tag}"] = point.specificity
        for groups in self.subgroups.values():
            out |= subgroups.flat_metrics(groups)
        return {k: float(v) for k, v in out.items() if v is not None}


def assess(y, p_model, y_heldout, p_heldout, target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
           groups: dict[str, np.ndarray] | None = None, no_subgroups: dict[str, str] | None = None,
           n_resamples: int = bootstrap.DEFAULT_RESAMPLES, seed: int = 0,
           targets=thresholds.DEFAULT_TARGETS, recalibrate: bool = True) -> Assessment:
    """``y, p_model``: the test split; ``y_heldout, p_heldout``: scores of patients the model did not train on
    and that are not the test split (out-of-fold training scores, or a validation split)."""
    y = np.asarray(y).astype(int)
    p_model = np.asarray(p_model, dtype=float)
    y_heldout = np.asarray(y_heldout).astype(int)
    p_heldout = np.asarray(p_heldout, dtype=float)
    recal = calibration.choose(y_heldout, p_heldout, seed=seed) if recalibrate else calibration.fit(
        calibration.IDENTITY, y_heldout, p_heldout)
    p = recal.apply(p_model)
    p_held = recal.apply(p_heldout)
    threshold = thresholds.threshold_for_sensitivity(y_heldout, p_held, target_sensitivity)
    points = thresholds.operating_points(y, p, targets, choose_on=(y_heldout, p_held))
    by_attribute = {attribute: subgroups.evaluate(attribute, labels, y, p, threshold, n_resamples, seed)
                    for attribute, labels in (groups or {}).items()}
    return Assessment(
        y=y, p_model=p_model, p=p, recalibration=recal, target_sensitivity=float(target_sensitivity),
        threshold=threshold, metrics=binary_metrics(y, p, threshold),
        intervals=bootstrap.intervals(y, p, threshold, n_resamples, seed),
        calibration_model=calibration.summary(y, p_model), calibration_served=calibration.summary(y, p),
        operating_points=points, decision_curve=thresholds.decision_curve(y, p), subgroups=by_attribute,
        no_subgroups=dict(no_subgroups or {}), n_resamples=n_resamples)


def write_settings(folder: Path, n_resamples: int, seed: int) -> Path:
    """Record the evaluate step's bootstrap settings in its evaluation artifact (``folder``), so that the gate's
    paired comparison with the champion draws as many resamples, with the same seed, as the intervals did."""
    path = Path(folder) / SETTINGS_FILE
    path.write_text(json.dumps({"bootstrap_resamples": int(n_resamples), "seed": int(seed)}))
    return path


def read_settings(folder: Path) -> dict[str, int]:
    """``{"bootstrap_resamples": ..., "seed": ...}`` as :func:`write_settings` recorded them in ``folder``."""
    settings = json.loads((Path(folder) / SETTINGS_FILE).read_text())
    return {"bootstrap_resamples": int(settings["bootstrap_resamples"]), "seed": int(settings["seed"])}
