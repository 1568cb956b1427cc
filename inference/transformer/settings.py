"""Settings of the transformer (env prefix ``CLINOPS_TRANSFORMER_``; flags override).

The predictor's address and protocol are KServe's own flags: ``--predictor_host host:port`` and
``--predictor_protocol v2|grpc-v2``. Which bundle (its schema): :class:`inference.bundle_source.BundleSettings`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from inference.bundle_source import BundleSettings


class TransformerSettings(BundleSettings):
    model_config = SettingsConfigDict(env_prefix="CLINOPS_TRANSFORMER_", extra="ignore", protected_namespaces=())

    workload: str = Field("heart-disease", description="Workload (a catalog name): its bundle's schema picks the codec.")
    model_name: str | None = Field(None, description="Name on the V2 endpoints; default: the workload name.")
    predictor_timeout_s: float = Field(10.0, gt=0, description="Timeout of one call to the predictor.")
    predictor_retries: int = Field(2, ge=0, description="Retries of a predictor call that failed to connect "
                                                        "or was unavailable (then 503).")
    retry_backoff_ms: float = Field(50.0, ge=0, description="First retry delay; doubles on each retry.")
    batch_max_size: int = Field(64, ge=1, description="Most rows one predictor call carries: concurrent client "
                                                       "requests are merged into one call.")
    batch_max_wait_ms: float = Field(0.0, ge=0, description="How long to wait for more requests to merge "
                                                            "(0: merge only what is already queued).")
    predictor_max_in_flight: int = Field(2, ge=1, description="Predictor calls out at once: a further call goes "
                                                             "as predictor_dispatch allows, so the predictor finds "
                                                             "its next batch waiting (1: strictly one at a time).")
    predictor_dispatch: Literal["eager", "full"] | None = Field(
        None, description="When a further predictor call may start while one is out: eager (as soon as a slot "
                          "is free: the transformer prepares the next requests meanwhile; heart-disease's "
                          "default, whose model answers in a millisecond) or full (only with a full batch: "
                          "big batches for an expensive model; pneumonia's default).")
    predictor_input: Literal["uint8", "fp32"] = Field(
        "uint8", description="pneumonia: send the predictor UINT8 pixels (it normalises them) or FP32 tensors "
                             "already normalised (for predictors that take FP32 only).")
    decode_threads: int = Field(1, ge=1, description="Threads that decode and resize images (pneumonia): few, so "
                                                     "that they leave the cores to the predictor.")
    max_in_flight_rows: int = Field(4096, ge=0, description="Rows (tables) queued or in a predictor call at once; a "
                                    "request past it is refused at once with 503 and Retry-After / UNAVAILABLE "
                                    "(0: no bound).")
    max_in_flight_pixels: int = Field(64 * 1024 * 1024, ge=0, description="Decoded pixel values (images) queued "
                                      "or in a predictor call at once; a request past it is refused at once with 503 and "
                                      "Retry-After / UNAVAILABLE (0: no bound).")
    max_rows_per_request: int = Field(1024, ge=1, description="Most records/images in one request (else 400).")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="REST bodies over this are rejected (400).")
    max_image_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Largest encoded image file (else 400).")
    max_pixels: int | None = Field(None, ge=1, description="Largest image width×height; default: the bundle's.")
    max_request_pixels: int = Field(64 * 1024 * 1024, ge=1, description="Decode budget of one request: the sum of width×height over its images, read from their headers before any is decoded (else 400).")
    drift_url: str | None = Field(None, description="The drift sidecar's URL: every predictor call is sent there as "
                                                    "the KServe request logger's CloudEvents (locally; in a cluster "
                                                    "KServe's own logger does it). Unset: nothing is sent.")
    drift_log_mode: Literal["all", "request", "response"] | None = Field(
        None, description="What is sent (KServe's logger mode); default: all for tabular workloads, response "
                          "for image ones (their detector reads the embedding: images are never sent).")
    drift_queue_size: int = Field(10_000, ge=1, description="Predictor calls waiting to be sent; past it they are "
                                                            "dropped and counted, never waited for.")
    threshold: float | None = Field(None, ge=0, le=1, description="Decision threshold; default: the bundle's.")
    risk_medium: float | None = Field(None, ge=0, le=1, description="P(disease) from which risk is Medium.")
    risk_high: float | None = Field(None, ge=0, le=1, description="P(disease) from which risk is High.")

    @property
    def name(self) -> str:
        return self.model_name or self.workload
