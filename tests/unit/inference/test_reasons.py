"""Rejections name a reason from a closed set: the ``reason`` label of ``clinops_rejected_inputs_total``
can only take the enum's values, however malformed the requests."""

import asyncio
import base64
import json
import random

import numpy as np
import pytest
from images import encode, png_bomb_header, random_image
from kserve.protocol.infer_type import InferInput, InferRequest
from prometheus_client import REGISTRY
from support import fuzz

from inference import metrics
from inference.envelope import BadRequest, EnvelopeMiddleware
from inference.errors import RejectedInput
from inference.predictor_io import single_tensor
from inference.reasons import Reason
from inference.transformer.model import Transformer
from inference.transformer.settings import TransformerSettings

pytestmark = pytest.mark.unit
ROW = {"age": 63, "sex": "male", "cp": "asymptomatic", "trestbps": 145, "chol": 233, "fbs": 1, "restecg": 2,
       "thalach": 150, "exang": 0, "oldpeak": 2.3, "slope": 3, "ca": 0, "thal": "fixed defect"}


def rejected() -> dict[tuple[str, str], float]:
    """``clinops_rejected_inputs_total`` by (model, reason)."""
    return {(s.labels["model"], s.labels["reason"]): s.value for family in REGISTRY.collect()
            if family.name == "clinops_rejected_inputs" for s in family.samples if s.name.endswith("_total")}


def test_every_reason_is_a_distinct_snake_case_label():
    values = [reason.value for reason in Reason]
    assert len(set(values)) == len(values)
    for reason in Reason:
        assert reason.value == reason.name.lower() and str(reason) == reason.value
        metrics.REJECTED.labels("reasons-test", reason.value)
    assert {reason for (model, reason) in rejected() if model == "reasons-test"} == set(values)


def test_a_plain_string_is_refused():
    before = rejected()
    with pytest.raises(TypeError, match="must be a Reason, not str 'shape'"):
        BadRequest("shape", "x")
    with pytest.raises(TypeError, match="must be a Reason, not str 'made_up'"):
        RejectedInput("m", "made_up", "x")
    assert RejectedInput("m", Reason.SHAPE, "x").kind is Reason.SHAPE
    assert rejected().get(("m", "made_up")) is None and ("m", "made_up") not in before


async def envelope_status(middleware, body: bytes, headers: dict) -> int:
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v2/models/heart-disease/infer",
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    await middleware(scope, receive, send)
    return sent[0]["status"]


async def accept(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


def fuzzed_bodies(rng: random.Random, n: int) -> list[tuple[bytes, dict]]:
    valid = json.dumps({"inputs": [{"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "FP64",
                                    "data": [v]} for k, v in ROW.items()]}).encode()
    bodies = []
    for _ in range(n):
        data, headers = bytearray(valid), {"content-type": "application/json"}
        action = rng.choice([*fuzz.BODY_MUTATIONS, "binary"])
        if action == "binary":
            headers["inference-header-content-length"] = rng.choice(["abc", "-1", str(len(data) + 9), "10"])
        else:
            data = fuzz.mutate(rng, valid, action)
        bodies.append((bytes(data), headers))
    return bodies


def malformed_inputs(rng: random.Random) -> list[list[InferInput]]:
    """Per-feature heart-disease requests with one input broken in one of many ways."""
    broken = []
    for _ in range(150):
        row = dict(ROW)
        name = rng.choice(list(row))
        row[name] = rng.choice([None, "unheard of", -5, 1e9, float("nan"), float("inf"), True, "", 2.5, "DROP"])
        inputs = [InferInput(k, [1], "BYTES" if isinstance(v, str) else "FP64", [v]) for k, v in row.items()
                  if v != "DROP"]
        if rng.random() < 0.2:
            inputs.append(InferInput(rng.choice(["bmi", "age", "features"]), [1], "FP64", [1.0]))
        if rng.random() < 0.1:
            inputs[0] = InferInput(inputs[0].name, [2], rng.choice(["FP64", "BOOL", "INT8"]), [1, 2])
        broken.append(inputs)
    return broken


def image_requests() -> list[list[InferInput]]:
    files = [b"not an image", encode(random_image(30, 30))[:60], png_bomb_header(), encode(random_image(8, 8), "BMP"),
             b""]
    requests = [[InferInput("image", [1], "BYTES", [base64.b64encode(f).decode()])] for f in files]
    return requests + [[InferInput("image", [1], "BYTES", ["%%%"])], [InferInput("image", [1], "FP32", [1.0])],
                       [InferInput("x", [1], "BYTES", ["eA=="])], [InferInput("image", [2], "BYTES", ["eA=="])]]


def test_many_malformed_requests_give_only_reasons_of_the_enum(heart_bundle, pneumonia_bundle):
    rng = random.Random(7)
    before = rejected()
    envelope = EnvelopeMiddleware(accept, max_body_bytes=4096, models=frozenset({"heart-disease"}))
    heart = Transformer(TransformerSettings(bundle=str(heart_bundle), model_name="reasons-heart"), "127.0.0.1:1")
    image = Transformer(TransformerSettings(workload="pneumonia", bundle=str(pneumonia_bundle),
                                            model_name="reasons-image"), "127.0.0.1:1")
    assert heart.load() and image.load()

    async def main():
        statuses = [await envelope_status(envelope, body, headers) for body, headers in fuzzed_bodies(rng, 300)]
        statuses.append(await envelope_status(envelope, b"x" * 5000, {}))
        outcomes = []
        for model, requests in ((heart, malformed_inputs(rng)), (image, image_requests())):
            for inputs in requests:
                try:
                    await model.preprocess(InferRequest(model.name, inputs))
                    outcomes.append("accepted")
                except RejectedInput as err:
                    outcomes.append(err.kind)
        for array, datatype in ((np.zeros((1, 12)), "FP64"), (np.full((1, 13), np.inf), "FP64")):
            tensor = InferInput("features", list(array.shape), datatype)
            tensor.set_data_from_numpy(array, binary_data=False)
            with pytest.raises(RejectedInput):
                single_tensor(InferRequest("reasons-predictor", [tensor]), "reasons-predictor", (13,), 10)
        return statuses, outcomes

    statuses, outcomes = asyncio.run(main())
    heart.stop()
    image.stop()
    assert set(statuses) <= {200, 400} and statuses.count(400) > 100
    assert all(o == "accepted" or isinstance(o, Reason) for o in outcomes)
    grown = {key: value - before.get(key, 0) for key, value in rejected().items() if value > before.get(key, 0)}
    assert {reason for _, reason in grown} <= {reason.value for reason in Reason}
    assert sum(grown.values()) >= 300
    assert len({reason for _, reason in grown}) >= 15, sorted(grown)
