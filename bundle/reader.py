"""Open a bundle for serving or drift detection: verify every file against the manifest, then read the
typed contract files. Nothing (no model, no array) is loaded before the hashes match."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bundle import champion, drift, schema, storage
from bundle.calibration import Calibration
from bundle.errors import MalformedFile
from bundle.layout import CALIBRATION, DRIFT_REFERENCE, PYTORCH, SCHEMA
from bundle.manifest import Manifest
from bundle.model_config import TorchModelConfig


@dataclass(frozen=True)
class Bundle:
    folder: Path
    manifest: Manifest
    schema: schema.Schema
    drift: drift.DriftSettings
    model_config: TorchModelConfig | None  # PyTorch bundles only
    calibration: Calibration | None = None  # when the bundle holds calibration.json

    @property
    def model_path(self) -> Path:
        return self.folder / self.manifest.model_file

    @property
    def drift_reference_path(self) -> Path:
        return self.folder / DRIFT_REFERENCE


def open_bundle(folder: Path, workload: str | None = None, framework: str | None = None) -> Bundle:
    """Verify and read the bundle in ``folder``; ``workload`` / ``framework``, when given, must match."""
    folder = Path(folder)
    manifest = Manifest.read(folder)
    if workload is not None and manifest.workload != workload:
        raise MalformedFile(folder, "bundle.json", f"a {manifest.workload} bundle, not {workload}")
    if framework is not None and manifest.framework != framework:
        raise MalformedFile(folder, "bundle.json", f"holds a {manifest.framework} model, not {framework}")
    manifest.verify(folder)
    input_schema = schema.read(folder)
    if input_schema.workload != manifest.workload:
        raise MalformedFile(folder, SCHEMA, f"is for {input_schema.workload}, the manifest for {manifest.workload}")
    config = TorchModelConfig.read(folder) if manifest.framework == PYTORCH else None
    calibration = Calibration.read(folder) if CALIBRATION in manifest.files else None
    point = calibration.operating_point if calibration else None
    if point is not None and abs(point.threshold - input_schema.threshold) > 1e-12:
        raise MalformedFile(folder, CALIBRATION, f"operating point threshold {point.threshold} differs from "
                                                 f"{SCHEMA}'s threshold {input_schema.threshold}")
    return Bundle(folder, manifest, input_schema, drift.read(folder), config, calibration)


def locate(uri: str | None, workload: str, store: str | None = None, s3: storage.S3Config | None = None,
           cache_dir: Path | None = None) -> Path:
    """A local folder holding the bundle at ``uri`` (a folder or ``s3://``); ``uri`` None means the
    workload's champion in ``store``. An S3 bundle is downloaded into ``cache_dir``, or into a private
    folder removed when the process exits."""
    if not uri:
        pointer = champion.read(store, workload, s3) if store else None
        if pointer is None:
            raise FileNotFoundError(f"no bundle given and no champion promoted for {workload}"
                                    + (f" in {store}" if store else ""))
        uri = pointer.bundle_uri
    if not storage.is_s3(uri):
        return Path(uri)
    if cache_dir is None:
        local = Path(tempfile.mkdtemp(prefix=f"clinops-{workload}-"))
        atexit.register(shutil.rmtree, local, True)
    else:
        local = Path(cache_dir)
    return storage.download_dir(uri, local, s3)
