"""The champion bundle's drift reference, read through the bundle contract only (the same files the
drift sidecar builds its detectors from), as a table for the report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bundle import locate, open_bundle
from bundle.drift import TabularDriftSettings
from components.common.settings import get_settings
from components.monitoring.columns import Columns, columns_of
from components.monitoring.frames import reference_frame


@dataclass(frozen=True)
class Reference:
    frame: pd.DataFrame
    columns: Columns
    model: str  # "<model name> v<version>", for the report's heading
    source: str  # the bundle folder, or which store's champion it is


def load_reference(workload: str, bundle_uri: str = "", store: str = "") -> Reference:
    """The reference of ``bundle_uri``, or of the workload's champion in ``store`` (default: the
    configured store)."""
    settings = get_settings()
    store = store or settings.bundles
    folder = locate(bundle_uri or None, workload, store, settings.s3)
    opened = open_bundle(folder, workload)
    drift = opened.drift
    with np.load(opened.drift_reference_path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    columns = columns_of(drift, arrays)
    score_array = drift.score.reference_array if isinstance(drift, TabularDriftSettings) and drift.score else None
    frame = reference_frame(arrays, drift.reference_array, columns, score_array)
    manifest = opened.manifest
    source = bundle_uri or (str(Path(folder)) if Path(folder).is_relative_to(store) else f"champion of {store}")
    return Reference(frame, columns, f"{manifest.model_name} v{manifest.model_version}", source)
