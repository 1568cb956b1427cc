"""Ingest: bring the chosen source into the step's output folder, in one of the two real formats.

``source`` is ``phantom`` (the embedded default: generated here, in the Kaggle layout), a folder in
the Kaggle layout, a MedMNIST ``.npz`` file, or an ``s3://`` folder holding either.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from components.common import storage
from components.pneumonia import loaders, phantom

PHANTOM = "phantom"


def materialise(source: str, out_dir: Path, spec: phantom.PhantomSpec = phantom.PhantomSpec()) -> dict:
    """Fill ``out_dir``; returns what was found (format, image count, ignored files)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if source == PHANTOM:
        phantom.generate(out_dir, spec)
    elif storage.is_s3(source):
        with tempfile.TemporaryDirectory() as tmp:
            storage.download_dir(source, Path(tmp))
            _copy_local(Path(tmp), out_dir)
    else:
        _copy_local(Path(source), out_dir)
    inventory = loaders.scan(out_dir)
    return {"source": source, "format": inventory.format, "images": len(inventory.records),
            "ignored": len(inventory.ignored)}


def _copy_local(src: Path, out_dir: Path) -> None:
    if not src.exists():
        raise FileNotFoundError(f"ingest: no dataset at {src}")
    npz = loaders.find_npz(src)
    if npz is not None and (src.is_file() or loaders.find_kaggle_root(src) is None):
        shutil.copy2(npz, out_dir / npz.name)
        return
    base = loaders.find_kaggle_root(src)
    if base is None:
        raise FileNotFoundError(f"ingest: {src} is neither a Kaggle-layout folder nor a MedMNIST .npz")
    for split in loaders.SPLITS:
        if (base / split).is_dir():
            shutil.copytree(base / split, out_dir / split, dirs_exist_ok=True)
