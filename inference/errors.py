"""Errors that KServe's handlers map to status codes (REST and gRPC alike).

``InvalidInput`` → 400 / INVALID_ARGUMENT; ``ModelNotFound`` → 404 / NOT_FOUND. KServe's
``ModelNotReady`` maps to 503 over REST but lacks the ``reason`` its gRPC interceptor reads, so
:class:`PredictorUnavailable` carries one and maps to 503 / UNAVAILABLE on both.
"""

from __future__ import annotations

from kserve.errors import InvalidInput, ModelNotReady

from inference import metrics
from inference.reasons import Reason, checked


class PredictorUnavailable(ModelNotReady):
    def __init__(self, model_name: str, detail: str):
        super().__init__(model_name, detail)
        self.reason = self.error_msg


class RejectedInput(InvalidInput):
    """A 400 that also records why it was rejected (the ``reason`` label of the metric)."""

    def __init__(self, model: str, reason: Reason, message: str):
        super().__init__(message)
        self.kind = checked(reason)  # not "reason": KServe's InvalidInput keeps its message there
        metrics.REJECTED.labels(model, reason.value).inc()
