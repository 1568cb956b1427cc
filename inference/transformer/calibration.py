"""The bundle's calibration (``calibration.json``) applied to a batch of probabilities: the vectorised form
of :meth:`bundle.calibration.Calibration.apply_one`, the definition training fitted and tested against."""

from __future__ import annotations

import numpy as np

from bundle.calibration import EPS, ISOTONIC, PLATT, Calibration


def served_probability(p: np.ndarray, calibration: Calibration | None) -> np.ndarray:
    """The probability the transformer returns (and thresholds) for the model's probability ``p``."""
    p = np.asarray(p, dtype=np.float64)
    if calibration is None or calibration.method not in (PLATT, ISOTONIC):
        return p
    if calibration.method == PLATT:
        q = np.clip(p, EPS, 1 - EPS)
        return 1.0 / (1.0 + np.exp(-(calibration.a * np.log(q / (1 - q)) + calibration.b)))
    return np.interp(p, calibration.x, calibration.y)
