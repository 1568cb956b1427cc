"""Settings of the scikit-learn predictor (env prefix ``CLINOPS_SKLEARN_``; flags override); which bundle:
:class:`inference.bundle_source.BundleSettings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from inference.bundle_source import BundleSettings


class SklearnPredictorSettings(BundleSettings):
    model_config = SettingsConfigDict(env_prefix="CLINOPS_SKLEARN_", extra="ignore", protected_namespaces=())

    model_name: str = Field("heart-disease", description="Name on the V2 endpoints; the transformer's name.")
    workload: str = Field("heart-disease", description="Workload whose champion is served when no bundle is given.")
    max_batch_size: int = Field(64, ge=1, description="Most rows one model call gets from dynamic batching.")
    max_wait_ms: float = Field(0.0, ge=0, description="Extra wait for more requests once a batch has one (0: take "
                                                     "what queued up while the previous batch ran, no fixed wait).")
    inline_predict: bool = Field(True, description="Run the model on the event loop rather than in a worker thread: "
                                                   "cheaper for pipelines that answer a batch in about a millisecond; "
                                                   "turn off for slow models so that they do not hold up the loop.")
    compiled_pipeline: bool = Field(True, description="Run the fitted pipeline's arithmetic without scikit-learn's "
                                    "per-step input checks (about 3 ms a call on the registered pipeline) once it "
                                    "has given scikit-learn's answers on the bundle's reference rows; pipelines "
                                    "with other steps, or off, go through scikit-learn.")
    max_in_flight_rows: int = Field(4096, ge=0, description="Rows (tables) queued or in a model call at once; a "
                                    "request past it is refused at once with 503 and Retry-After / UNAVAILABLE "
                                    "(0: no bound).")
    max_rows_per_request: int = Field(1024, ge=1, description="Requests with more rows are rejected (400).")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="REST bodies over this are rejected (400).")
