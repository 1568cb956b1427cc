"""The artifact store as training sees it: the bundle contract's storage functions with the S3/MinIO
connection of the configured settings (credentials from the environment, never from code)."""

from __future__ import annotations

from pathlib import Path

from bundle import storage as _store
from bundle.storage import is_s3, join  # noqa: F401  (re-exported for callers of this module)
from components.common.settings import get_settings


def upload_dir(local_dir: Path, dest_uri: str) -> str:
    return _store.upload_dir(local_dir, dest_uri, get_settings().s3)


def download_dir(src_uri: str, local_dir: Path) -> Path:
    return _store.download_dir(src_uri, local_dir, get_settings().s3)


def read_text(src_uri: str) -> str:
    return _store.read_text(src_uri, get_settings().s3)


def write_text(dest_uri: str, text: str) -> None:
    _store.write_text(dest_uri, text, get_settings().s3)
