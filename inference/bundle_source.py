"""Find the serving bundle a runtime serves: a local folder, an ``s3://`` URI, or the champion."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from components.common import bundle, storage


def resolve(uri: str | None, workload: str, cache_dir: Path | None = None) -> Path:
    """A local folder holding the bundle; ``uri`` None means the workload's current champion."""
    uri = uri or bundle.champion_uri(workload)
    if not uri:
        raise FileNotFoundError(f"no bundle given and no champion promoted for {workload}")
    if not storage.is_s3(uri):
        return Path(uri)
    if cache_dir is None:
        # a private copy for this process's lifetime, removed when it exits
        local = Path(tempfile.mkdtemp(prefix=f"clinops-{workload}-"))
        atexit.register(shutil.rmtree, local, True)
    else:
        local = Path(cache_dir)
    return storage.download_dir(uri, local)


def manifest(folder: Path) -> bundle.BundleManifest:
    return bundle.BundleManifest.read(folder)
