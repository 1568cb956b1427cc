"""The serving bundle: the versioned folder that training writes and serving reads.

Layout of ``<store>/<workload>/<version>/``::

    bundle.json          manifest (this module's BUNDLE_FORMAT): workload, model name/version,
                         framework, the file names below, metrics, MLflow run id, promotion
    model.joblib         scikit-learn: the whole preprocessing + estimator Pipeline (KServe sklearn layout)
    model.pt             PyTorch: TorchScript module (with model_config.json beside it)
    schema.json          the input contract the transformer validates against
    drift/reference.npz  drift reference sample (array ``x``; more arrays per workload)
    drift/settings.json  detector settings (detector name, p-value, feature names/kinds)

and ``<store>/<workload>/champion.json`` names the version holding the ``champion`` alias.
Training and serving share only this layout; neither imports the other's internals.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from components.common import storage
from components.common.settings import get_settings

BUNDLE_FORMAT = 1
MANIFEST = "bundle.json"
SCHEMA = "schema.json"
DRIFT_DIR = "drift"
CHAMPION_POINTER = "champion.json"


@dataclass
class BundleManifest:
    workload: str
    model_name: str
    model_version: str
    framework: str  # "sklearn" | "pytorch"
    model_file: str
    schema_file: str = SCHEMA
    drift_reference: str = f"{DRIFT_DIR}/reference.npz"
    drift_settings: str = f"{DRIFT_DIR}/settings.json"
    metrics: dict = field(default_factory=dict)
    mlflow_run_id: str | None = None
    promoted: bool = False
    extra_files: list[str] = field(default_factory=list)
    format_version: int = BUNDLE_FORMAT
    created_at: float = field(default_factory=time.time)

    def write(self, folder: Path) -> Path:
        path = Path(folder) / MANIFEST
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        return path

    @classmethod
    def read(cls, folder: Path) -> BundleManifest:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a serving bundle: {MANIFEST} is missing")
        data = json.loads(path.read_text())
        if data.get("format_version") != BUNDLE_FORMAT:
            raise ValueError(f"{path}: bundle format {data.get('format_version')} is not {BUNDLE_FORMAT}")
        return cls(**data)


def check_complete(folder: Path) -> BundleManifest:
    """Read the manifest and make sure every file it names is there."""
    manifest = BundleManifest.read(folder)
    names = [manifest.model_file, manifest.schema_file, manifest.drift_reference, manifest.drift_settings]
    missing = [n for n in names + manifest.extra_files if not (Path(folder) / n).is_file()]
    if missing:
        raise FileNotFoundError(f"bundle {folder} lacks {', '.join(missing)}")
    return manifest


def write_json(folder: Path, name: str, payload: dict) -> Path:
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=float))
    return path


def bundle_uri(workload: str, version: str, store: str | None = None) -> str:
    return storage.join(store or get_settings().bundles, workload, str(version))


def publish(local_dir: Path, workload: str, version: str, promoted: bool, store: str | None = None) -> str:
    """Copy a complete bundle to the store; move the champion pointer when it was promoted."""
    manifest = check_complete(local_dir)
    store = store or get_settings().bundles
    uri = storage.upload_dir(Path(local_dir), bundle_uri(workload, version, store))
    if promoted:
        pointer = {"workload": workload, "model_version": str(version), "bundle_uri": uri,
                   "model_name": manifest.model_name}
        storage.write_text(storage.join(store, workload, CHAMPION_POINTER), json.dumps(pointer, indent=2))
    return uri


def champion_uri(workload: str, store: str | None = None) -> str | None:
    """The bundle URI of the current champion, or ``None`` when nothing was promoted yet."""
    store = store or get_settings().bundles
    try:
        return json.loads(storage.read_text(storage.join(store, workload, CHAMPION_POINTER)))["bundle_uri"]
    except (FileNotFoundError, KeyError):
        return None
    except Exception as err:  # minio raises S3Error for a missing key
        if type(err).__name__ == "S3Error":
            return None
        raise
