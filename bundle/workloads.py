"""The workloads clinops trains, serves and watches: one catalog that pipelines, the local stack, the
transformer and the drift sidecar read (by name; nothing here imports them)."""

from __future__ import annotations

from dataclasses import dataclass

from bundle.layout import PYTORCH, SKLEARN
from bundle.schema import IMAGE, TABULAR


@dataclass(frozen=True)
class Ports:
    """Local default ports (``make serve``); a cluster uses the runtimes' own 8080/8081."""

    transformer_http: int
    transformer_grpc: int
    predictor_http: int
    predictor_grpc: int
    drift: int


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str  # schema.TABULAR | schema.IMAGE: which transformer codec
    framework: str  # layout.SKLEARN | layout.PYTORCH
    predictor_runtime: str  # the serving module that runs its predictor (python -m ...)
    model_name: str  # registered model name in MLflow
    ports: Ports


WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    Workload("heart-disease", TABULAR, SKLEARN, "inference.sklearn_predictor", "heart-disease",
             Ports(8080, 8081, 8082, 8084, 8083)),
    Workload("pneumonia", IMAGE, PYTORCH, "inference.torch_predictor", "pneumonia",
             Ports(8090, 8091, 8092, 8094, 8093)),
)}
NAMES: tuple[str, ...] = tuple(WORKLOADS)


def get(name: str) -> Workload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise KeyError(f"unknown workload {name!r}; known: {', '.join(NAMES)}") from None
