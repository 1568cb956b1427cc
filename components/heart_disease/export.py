"""Assemble the heart-disease serving bundle, through the bundle contract's writer (layout: ``bundle.layout``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from bundle import BundleWriter, Manifest, layout
from bundle.drift import TabularDriftSettings, Window
from components.heart_disease.schema import CATEGORICAL, FEATURES, serving_schema

WORKLOAD = "heart-disease"
REFERENCE_ROWS = 500
DRIFT_WINDOW = 100  # patients per verdict (a Cleveland reference flags other sites in 100% of such windows)


def build_bundle(folder: Path, model_path: Path, train: pd.DataFrame, model_name: str, version: str,
                 threshold: float, metrics: dict | None = None, run_id: str | None = None, promoted: bool = False,
                 seed: int = 0) -> Manifest:
    """Write ``model.joblib``, ``schema.json``, the drift reference and ``bundle.json`` into ``folder``."""
    writer = BundleWriter(folder, WORKLOAD, layout.SKLEARN, model_name, version)
    shutil.copyfile(model_path, writer.model_path)
    writer.write_schema(serving_schema(threshold=threshold))
    sample = train.sample(n=min(REFERENCE_ROWS, len(train)), random_state=seed)
    np.savez_compressed(writer.drift_reference_path, x=sample[FEATURES].to_numpy(dtype=float))
    # KS on numeric features, chi-square on categorical ones; NaN (missing) is kept as information
    writer.write_drift(TabularDriftSettings(tuple(FEATURES), tuple(CATEGORICAL), p_val=0.05,
                                            window=Window(size=DRIFT_WINDOW)))
    return writer.finish(metrics=metrics, mlflow_run_id=run_id, promoted=promoted)
