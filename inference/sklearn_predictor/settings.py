"""Settings of the scikit-learn predictor (env prefix ``CLINOPS_SKLEARN_``; flags override)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SklearnPredictorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLINOPS_SKLEARN_", extra="ignore", protected_namespaces=())

    model_name: str = Field("heart-disease", description="Name on the V2 endpoints; the transformer's name.")
    workload: str = Field("heart-disease", description="Workload whose champion is served when no bundle is given.")
    bundle: str | None = Field(None, description="Bundle folder or s3:// URI (KServe storageUri); default: champion.")
    max_batch_size: int = Field(64, ge=1, description="Most rows one model call gets from dynamic batching.")
    max_wait_ms: float = Field(1.0, ge=0, description="How long a batch waits for more requests once it has one.")
    max_rows_per_request: int = Field(1024, ge=1, description="Requests with more rows are rejected (400).")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="REST bodies over this are rejected (400).")
