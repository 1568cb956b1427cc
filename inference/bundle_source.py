"""The bundle a runtime serves, found and opened through the bundle contract alone.

:class:`BundleSettings` is the part of every runtime's settings that names it: a folder or ``s3://`` URI
(KServe's storageUri), else the workload's champion in the bundle store. :func:`open_served` verifies
every file against the manifest before the runtime loads anything from it.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

import bundle
from bundle import workloads
from bundle.storage import S3Config

# what ends a runtime at start-up with one line (see server.load_or_exit): a bundle that fails
# verification or is malformed, or none to be found (no champion promoted, nothing under an s3:// URI)
UNSERVABLE = (bundle.BundleError, FileNotFoundError)


class BundleSettings(BaseSettings):
    """Which bundle to serve. ``bundle_store`` and ``home`` keep the platform's variable names."""

    model_config = SettingsConfigDict(extra="ignore", validate_by_name=True)

    workload: str = Field(description="Workload (catalog name) whose bundle is served.")
    bundle: str | None = Field(None, description="Bundle folder or s3:// URI (KServe storageUri); default: champion.")
    bundle_store: str | None = Field(
        None, validation_alias="CLINOPS_BUNDLE_STORE",
        description="Store whose champion pointer names the bundle when none is given: a folder or "
                    "s3://bucket/prefix (env CLINOPS_BUNDLE_STORE); default: home/bundles.")
    home: Path = Field(Path(".clinops"), validation_alias="CLINOPS_HOME",
                       description="clinops local state (env CLINOPS_HOME).")

    @field_validator("workload")
    @classmethod
    def _in_catalog(cls, value: str) -> str:
        if value not in workloads.NAMES:
            raise ValueError(f"unknown workload {value!r}; known: {', '.join(workloads.NAMES)}")
        return value

    @model_validator(mode="after")
    def _default_store(self):
        if not self.bundle_store:
            self.bundle_store = str(self.home / "bundles")
        return self


def open_served(settings: BundleSettings, framework: str | None = None) -> bundle.Bundle:
    """The verified bundle ``settings`` name (downloaded first when on S3). Raises one of :data:`UNSERVABLE`."""
    folder = bundle.locate(settings.bundle, settings.workload, settings.bundle_store,
                           S3Config.from_environ(os.environ))
    return bundle.open_bundle(folder, settings.workload, framework)
