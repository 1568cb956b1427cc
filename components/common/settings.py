"""One settings object for the whole project, read from the environment (prefix ``CLINOPS_``).

Library code and components read configuration only through :func:`get_settings`; nothing reads
``os.environ`` elsewhere. Defaults are the embedded, cluster-free ones: SQLite MLflow and a local
artifact folder under ``$CLINOPS_HOME``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bundle.storage import S3Config
from components.common.image import DEFAULT_REGISTRY, DEFAULT_TAG


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLINOPS_", extra="ignore")

    home: Path = Field(Path(".clinops"), description="Local state: MLflow, pipeline roots, bundles.")
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("CLINOPS_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="MLflow server or database; default: SQLite under home.",
    )
    bundle_store: str | None = Field(
        None, description="Where serving bundles go: a folder or s3://bucket/prefix; default home/bundles."
    )
    s3_endpoint: str | None = Field(
        None,
        validation_alias=AliasChoices("CLINOPS_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
        description="S3/MinIO endpoint URL (http://host:port) for s3:// stores.",
    )
    s3_access_key: str | None = Field(None, validation_alias=AliasChoices("AWS_ACCESS_KEY_ID", "MINIO_ACCESS_KEY"))
    s3_secret_key: str | None = Field(
        None, validation_alias=AliasChoices("AWS_SECRET_ACCESS_KEY", "MINIO_SECRET_KEY")
    )
    s3_region: str | None = Field(None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))
    registry_lock: Literal["auto", "file", "lease"] = Field(
        "auto",
        description="How runs take turns at the model registry (schema set-up, gate, champion pointer): "
        "file = a file lock under home; lease = a Kubernetes coordination.k8s.io Lease; auto = lease in a "
        "pod when tracking does not go to a local SQLite file, else file.",
    )
    registry_lock_timeout: float = Field(600.0, description="Seconds to wait for the registry lock.")
    lease_namespace: str | None = Field(None, description="Namespace of the lock Lease; default: the pod's own.")
    image_registry: str = Field(
        DEFAULT_REGISTRY,
        description="Registry path of the project's images (what `make images IMAGE_REGISTRY=` pushed to; the "
        "component image carries it): the images of an InferenceService the deploy step creates.",
    )
    image_tag: str = Field(DEFAULT_TAG, description="Tag of the project's images (`make images IMAGE_TAG=`).")
    kfp_endpoint: str | None = Field(
        None,
        validation_alias=AliasChoices("CLINOPS_KFP_ENDPOINT", "KF_PIPELINES_ENDPOINT"),
        description="Kubeflow Pipelines API (e.g. http://ml-pipeline.kubeflow:8888) that the notebooks submit runs "
        "to; none: they run the pipelines here with kfp.local.",
    )
    kfp_namespace: str | None = Field(None, description="Kubeflow profile namespace of the notebooks' runs.")
    serving_endpoints: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description='In-cluster InferenceServices the notebooks call, per workload, as JSON: {"heart-disease": '
        '{"rest": "http://…", "grpc": "host:port"}}; a workload not listed: the notebook starts the local stack.',
    )
    kubernetes_service_host: str | None = Field(
        None, validation_alias="KUBERNETES_SERVICE_HOST", description="Set by Kubernetes in every pod."
    )

    @field_validator("home")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"

    @property
    def registry_lock_kind(self) -> str:
        """``file`` or ``lease``: what ``registry_lock`` resolves to here."""
        if self.registry_lock != "auto":
            return self.registry_lock
        in_pod = bool(self.kubernetes_service_host)
        return "lease" if in_pod and not self.tracking_uri.startswith("sqlite:") else "file"

    @property
    def mlflow_artifact_root(self) -> str:
        """Artifact root for experiments this project creates when tracking to a local database."""
        return (self.home / "mlflow" / "artifacts").as_uri()

    @property
    def s3(self) -> S3Config:
        """The S3/MinIO connection, explicit, for the bundle contract's storage functions."""
        return S3Config(self.s3_endpoint, self.s3_access_key, self.s3_secret_key, self.s3_region)

    @property
    def bundles(self) -> str:
        return self.bundle_store or str(self.home / "bundles")

    def pipeline_dir(self, workload: str) -> Path:
        return self.home / "pipelines" / workload

    @property
    def optuna_storage(self) -> str:
        return f"sqlite:///{self.home / 'optuna' / 'studies.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    settings = Settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    return settings


def reload_settings() -> Settings:
    """Forget the cached settings (tests and the command line change the environment)."""
    get_settings.cache_clear()
    return get_settings()
