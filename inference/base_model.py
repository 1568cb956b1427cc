"""A ``kserve.Model`` that counts every request's outcome in ``clinops_requests_total``."""

from __future__ import annotations

from kserve import Model
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
from kserve.model import InferenceVerb

from inference import metrics


def status_of(err: Exception) -> str:
    if isinstance(err, InvalidInput):
        return "400"
    if isinstance(err, ModelNotFound):
        return "404"
    if isinstance(err, ModelNotReady):
        return "503"
    return "500"


class CountedModel(Model):
    platform = ""  # model metadata's "platform" (KServe answers ""), set by each runtime

    def __init__(self, name: str):
        super().__init__(name)
        self.metrics = metrics.ModelMetrics(name)
        self.model_version: str | None = None  # the served bundle's model version (metadata's "versions")

    async def __call__(self, body, headers=None, verb: InferenceVerb = InferenceVerb.PREDICT):
        try:
            result = await super().__call__(body, headers, verb)
        except Exception as err:
            self.metrics.request(status_of(err))
            raise
        self.metrics.request("200")
        return result
