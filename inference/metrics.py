"""Prometheus metrics shared by every clinops serving process (exposed at ``/metrics``).

KServe's own ``request_*_seconds`` histograms stay; these add what operators of a clinical
service need: outcomes by status, per-stage latency, batch sizes, class counts, rejections.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
from prometheus_client import Counter, Histogram

REQUESTS = Counter("clinops_requests", "Inference requests by model and outcome status code.",
                   ["model", "status"])
STAGE_LATENCY = Histogram(
    "clinops_stage_latency_seconds", "Latency of one request stage (preprocess, predict, postprocess).",
    ["model", "stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BATCH_SIZE = Histogram("clinops_batch_size", "Rows per model call after dynamic batching.", ["model"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
PREDICTIONS = Counter("clinops_predictions", "Predictions returned, by predicted class.", ["model", "label"])
REJECTED = Counter("clinops_rejected_inputs", "Requests rejected as malformed, by reason.", ["model", "reason"])
PREDICTOR_CALLS = Counter("clinops_predictor_calls", "Transformer calls to its predictor by outcome.",
                          ["model", "outcome"])


@contextmanager
def stage(model: str, name: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        STAGE_LATENCY.labels(model, name).observe(time.perf_counter() - start)


class ModelMetrics:
    """One model's metric children, bound once: a ``labels()`` lookup per use costs more than the
    observation itself on the request path of a small model."""

    def __init__(self, model: str):
        self.model = model
        self.preprocess = STAGE_LATENCY.labels(model, "preprocess")
        self.predict = STAGE_LATENCY.labels(model, "predict")
        self.postprocess = STAGE_LATENCY.labels(model, "postprocess")
        self._requests: dict[str, object] = {}
        self._predictions: dict[str, object] = {}

    def request(self, status: str) -> None:
        child = self._requests.get(status)
        if child is None:
            child = self._requests[status] = REQUESTS.labels(self.model, status)
        child.inc()

    def predictions(self, label: str, count: int = 1) -> None:
        child = self._predictions.get(label)
        if child is None:
            child = self._predictions[label] = PREDICTIONS.labels(self.model, label)
        child.inc(count)

    def count_classes(self, labels, class_index) -> None:
        """Count predictions per class: ``class_index`` holds each row's index into ``labels``."""
        if len(class_index) == 1:
            self.predictions(labels[int(class_index[0])])
            return
        for index, count in enumerate(np.bincount(class_index, minlength=len(labels))):
            if count:
                self.predictions(labels[index], int(count))
