"""Small models of every family heart-disease training can choose, on the real UCI rows: for the
attribution tests of training and serving alike."""

from __future__ import annotations

import numpy as np

# one small configuration per family of components.heart_disease.model
FAMILIES = {"logistic_regression": {"C": 0.5},
            "gradient_boosting": {"n_estimators": 40, "learning_rate": 0.1, "max_depth": 3, "subsample": 1.0},
            "random_forest": {"n_estimators": 40, "min_samples_leaf": 2, "max_features": "sqrt"}}


def uci_rows() -> tuple[np.ndarray, np.ndarray]:
    """The coded UCI features (NaN = missing) and the binary target, rows with a target only."""
    from components.heart_disease import data
    from components.heart_disease.schema import FEATURES

    frame, _, _ = data.to_coded(data.ingest())
    frame = frame[frame["target"].notna()]
    return frame[FEATURES].to_numpy(dtype=float), frame["target"].astype(int).to_numpy()
