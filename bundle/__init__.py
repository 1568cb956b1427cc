"""The serving-bundle contract: the one thing training, the serving images and the drift sidecar share.

Standard library only (``minio`` is imported lazily, for ``s3://`` stores alone); imports nothing of the
project. Training writes bundles through :class:`BundleWriter`; serving and the drift sidecar read them
through :func:`open_bundle`, which verifies every file against the manifest's sha256 before anything is
loaded. Layout: :mod:`bundle.layout`.
"""

from bundle import calibration, champion, drift, layout, schema, storage, workloads
from bundle.errors import BundleError, IntegrityError, MalformedFile, MissingFile
from bundle.manifest import FileEntry, Manifest
from bundle.model_config import TorchModelConfig
from bundle.reader import Bundle, locate, open_bundle
from bundle.writer import BundleWriter

__all__ = ["Bundle", "BundleError", "BundleWriter", "FileEntry", "IntegrityError", "MalformedFile", "Manifest",
           "MissingFile", "TorchModelConfig", "calibration", "champion", "drift", "layout", "locate", "open_bundle", "schema",
           "storage", "workloads"]
