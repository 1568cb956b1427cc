"""Settings of the PyTorch predictor (env prefix ``CLINOPS_TORCH_``; flags override); which bundle:
:class:`inference.bundle_source.BundleSettings`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from inference.bundle_source import BundleSettings


class TorchPredictorSettings(BundleSettings):
    model_config = SettingsConfigDict(env_prefix="CLINOPS_TORCH_", extra="ignore", protected_namespaces=())

    model_name: str = Field("pneumonia", description="Name on the V2 endpoints; the transformer's name.")
    workload: str = Field("pneumonia", description="Workload whose champion is served when no bundle is given.")
    device: str = Field("auto", description="'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1' …")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="fp32 (TF32 matmuls allowed on GPU, see allow_tf32) matches the fp32 the decision "
        "threshold and drift reference were computed in; bf16/fp16 autocast on GPU is served only when it "
        "agrees with fp32 on plausible images at load (precision_tolerance), else fp32 is served.")
    precision_tolerance: float = Field(
        0.01, ge=0, description="Largest |P(class)| difference from fp32 on the load-time probe images that "
        "bf16/fp16 may show; the embedding may differ by 5x this, relative to its norm.")
    allow_tf32: bool = Field(True, description="TF32 tensor cores for fp32 matmuls and convolutions on GPU.")
    autocast_on_cpu: bool = Field(False, description="Let bf16 autocast run on CPU too (tests of the GPU path).")
    channels_last: bool | None = Field(None, description="channels_last module and input; default: on CUDA, and on "
                                                         "CPU when the graph is frozen (see freeze).")
    freeze: bool | None = Field(
        None, description="Serve a frozen copy of the TorchScript graph (weights inlined, batch norm folded into "
        "its convolutions), used only when its answers on plausible images at load match the saved graph's "
        "(freeze_check); Grad-CAM keeps the saved graph. Default: on CPU only.")
    max_batch_size: int = Field(32, ge=1, description="Most images one forward pass gets from dynamic batching.")
    max_wait_ms: float = Field(0.0, ge=0, description="Extra wait for more images once a batch has one (0: take "
                                                     "what queued up while the previous forward pass ran).")
    max_in_flight_pixels: int = Field(64 * 1024 * 1024, ge=0, description="Decoded pixel values queued or in a "
                                      "forward pass at once; a request past it is refused at once with 503 and "
                                      "Retry-After / UNAVAILABLE (0: no bound).")
    max_rows_per_request: int = Field(256, ge=1, description="Requests with more images are rejected (400).")
    max_body_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="REST bodies over this are rejected (400).")
    num_threads: int | None = Field(None, ge=1, description="torch intra-op threads on CPU; default: the cores this "
                                                               "process may use (CPU affinity, cgroup CPU quota).")
    forward_workers: int | None = Field(
        None, ge=1, description="Forward passes run at once on CPU, each on a thread of its own with num_threads "
        "intra-op threads; a further pass starts only with a full batch, so below saturation passes run one "
        "at a time. Default: the cores this process may use divided by num_threads (so at least 1); always 1 "
        "on CUDA.")
