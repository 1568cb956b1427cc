"""Assemble the heart-disease serving bundle (layout: ``components.common.bundle``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from components.common.bundle import DRIFT_DIR, SCHEMA, BundleManifest, write_json
from components.heart_disease.schema import CATEGORICAL, FEATURES, serving_schema

REFERENCE_ROWS = 500


def build_bundle(folder: Path, model_path: Path, train: pd.DataFrame, manifest: BundleManifest,
                 threshold: float, seed: int = 0) -> Path:
    """Write ``model.joblib``, ``schema.json``, the drift reference and ``bundle.json`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_path, folder / "model.joblib")
    write_json(folder, SCHEMA, serving_schema(threshold=threshold))

    sample = train.sample(n=min(REFERENCE_ROWS, len(train)), random_state=seed)
    (folder / DRIFT_DIR).mkdir(exist_ok=True)
    np.savez_compressed(folder / DRIFT_DIR / "reference.npz", x=sample[FEATURES].to_numpy(dtype=float))
    write_json(folder, f"{DRIFT_DIR}/settings.json", {
        "detector": "TabularDrift",
        "p_val": 0.05,
        "feature_names": FEATURES,
        # alibi-detect's TabularDrift: column index -> None (categories inferred from the reference).
        "categories_per_feature": {str(FEATURES.index(f)): None for f in CATEGORICAL},
        "missing": "NaN",
        "window": 100,
    })
    manifest.write(folder)
    return folder
