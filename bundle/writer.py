"""Write a bundle: training calls this and nothing else to produce one.

::

    writer = BundleWriter(folder, "heart-disease", SKLEARN, "heart-disease", "7")
    shutil.copyfile(trained, writer.model_path)
    writer.write_schema(TabularSchema(...))
    np.savez_compressed(writer.drift_reference_path, x=sample)
    writer.write_drift(TabularDriftSettings(...))
    manifest = writer.finish(metrics=..., mlflow_run_id=..., promoted=True)

``finish`` checks that every file of the layout is there, records each file's sha256 and size in
``bundle.json`` and reads the bundle back as a server would.
"""

from __future__ import annotations

import json
from pathlib import Path

from bundle.calibration import Calibration
from bundle.drift import DriftSettings
from bundle.errors import MissingFile
from bundle.layout import (
    DRIFT_DIR,
    DRIFT_REFERENCE,
    DRIFT_SETTINGS,
    FRAMEWORKS,
    MODEL_FILE,
    SCHEMA,
    required_files,
)
from bundle.manifest import Manifest
from bundle.model_config import TorchModelConfig
from bundle.schema import Schema


def write_json(folder: Path, name: str, payload: dict) -> Path:
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, allow_nan=False))
    return path


class BundleWriter:
    def __init__(self, folder: Path, workload: str, framework: str, model_name: str, model_version: str):
        if framework not in FRAMEWORKS:
            raise ValueError(f"framework {framework!r}: one of {FRAMEWORKS}")
        self.folder = Path(folder)
        (self.folder / DRIFT_DIR).mkdir(parents=True, exist_ok=True)
        self.workload, self.framework = workload, framework
        self.model_name, self.model_version = model_name, str(model_version)

    @property
    def model_path(self) -> Path:
        return self.folder / MODEL_FILE[self.framework]

    @property
    def drift_reference_path(self) -> Path:
        return self.folder / DRIFT_REFERENCE

    def write_schema(self, schema: Schema) -> Path:
        if schema.workload != self.workload:
            raise ValueError(f"schema for {schema.workload} in a {self.workload} bundle")
        return write_json(self.folder, SCHEMA, schema.to_dict())

    def write_model_config(self, config: TorchModelConfig) -> Path:
        return config.write(self.folder)

    def write_calibration(self, calibration: Calibration) -> Path:
        return calibration.write(self.folder)

    def write_drift(self, settings: DriftSettings) -> Path:
        return write_json(self.folder, DRIFT_SETTINGS, settings.to_dict())

    def finish(self, metrics: dict | None = None, mlflow_run_id: str | None = None,
               promoted: bool = False) -> Manifest:
        missing = [name for name in required_files(self.framework) if not (self.folder / name).is_file()]
        if missing:
            raise MissingFile(self.folder, missing[0], f"not written (a {self.framework} bundle needs "
                                                       f"{', '.join(required_files(self.framework))})")
        manifest = Manifest(self.workload, self.model_name, self.model_version, self.framework,
                            metrics={k: float(v) for k, v in (metrics or {}).items()
                                     if isinstance(v, (int, float)) and not isinstance(v, bool)},
                            mlflow_run_id=mlflow_run_id, promoted=promoted)
        manifest.record_files(self.folder)
        manifest.write(self.folder)
        from bundle.reader import open_bundle

        open_bundle(self.folder, self.workload, self.framework)  # what a server will do, now
        return manifest
