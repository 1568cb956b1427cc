"""CountedModel hands KServe's inference verb through: an explain call runs ``explain``, not ``predict``."""

import asyncio

import pytest
from kserve.model import InferenceVerb

from inference import metrics
from inference.base_model import CountedModel

pytestmark = pytest.mark.unit


class Verbs(CountedModel):
    def __init__(self):
        super().__init__("verbs-test")
        self.ready = True

    async def predict(self, payload, headers=None, response_headers=None):
        return {"ran": "predict", "x": payload["x"]}

    async def explain(self, payload, headers=None):
        return {"ran": "explain", "x": payload["x"]}


def test_the_explain_verb_reaches_explain_and_the_default_is_predict():
    model = Verbs()
    ok = metrics.REQUESTS.labels("verbs-test", "200")
    before = ok._value.get()
    explained, _ = asyncio.run(model({"x": 1}, verb=InferenceVerb.EXPLAIN))
    predicted, _ = asyncio.run(model({"x": 2}))
    assert explained == {"ran": "explain", "x": 1}
    assert predicted == {"ran": "predict", "x": 2}
    assert ok._value.get() - before == 2
