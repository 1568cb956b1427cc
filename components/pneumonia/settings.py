"""Training settings of the pneumonia workload (env prefix ``CLINOPS_PNEUMONIA_``), read through
:func:`train_settings` only; the S3 connection itself is the project's (:mod:`components.common.settings`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TrainSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLINOPS_PNEUMONIA_", extra="ignore")

    ray_storage: str | None = Field(
        None, description="Where Ray Train keeps checkpoints and results on a local run: a folder or "
        "s3://bucket/prefix; default: a temporary folder removed after the search.")
    rayjob_storage: str = Field(
        "s3://clinops/pneumonia/ray", description="The same for a KubeRay RayJob: shared storage that the head "
        "and every worker pod reach (a folder on the head pod is out of the workers' reach).")


def train_settings() -> TrainSettings:
    return TrainSettings()
