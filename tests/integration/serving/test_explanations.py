"""Explanations from the real heart-disease stack: the V2 ``explanation`` output over REST and gRPC,
KServe's V1 ``:explain`` verb, and bad input refused by explain with the same 400 as by infer."""

import asyncio
import json

import joblib
import numpy as np
import pytest
from kserve import InferenceGRPCClient
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput
from support import sample_bundles
from support.v2_calls import post, rejections

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
ADDITIVITY_TOL = 1e-6  # |base_value + sum(contributions) - the model's log-odds| (float64 through JSON)


def complete_rows(schema, n, seed):
    rows = sample_bundles.heart_rows(schema, n, seed)
    return np.where(np.isnan(rows), np.nanmin(rows, axis=0), rows)  # JSON matrices carry no NaN


def log_odds(bundles, rows):
    pipeline = joblib.load(bundles["heart-disease"] / "model.joblib")
    return pipeline[-1].decision_function(pipeline[:-1].transform(rows))


def infer_body(rows, outputs):
    return {"inputs": [{"name": "features", "shape": list(rows.shape), "datatype": "FP64",
                        "data": rows.ravel().tolist()}], "outputs": [{"name": name} for name in outputs]}


def test_the_explanation_output_over_rest_adds_up_and_comes_only_when_asked(stack, bundles, heart_schema):
    rows = complete_rows(heart_schema, 4, seed=21)
    url = f"{stack.endpoints['heart-disease'].rest_url}/v2/models/heart-disease/infer"
    status, answer = post(url, infer_body(rows, ["explanation"]))
    assert status == 200
    assert [o["name"] for o in answer["outputs"]] == ["explanation"]  # only what was asked for
    documents = [json.loads(doc) for doc in answer["outputs"][0]["data"]]
    np.testing.assert_allclose([d["base_value"] + sum(f["contribution"] for f in d["features"]) for d in documents],
                               log_odds(bundles, rows), atol=ADDITIVITY_TOL)
    status, plain = post(url, infer_body(rows, ["probability"]))
    probability = plain["outputs"][0]["data"]
    np.testing.assert_allclose([d["probability"] for d in documents], probability, rtol=1e-6)
    for doc in documents:
        assert [f["name"] for f in doc["features"]] != list(heart_schema.feature_order)  # ordered by strength
        assert doc["space"] == "log-odds" and len(doc["top"]) == 3
        assert doc["top"][0].startswith(doc["features"][0]["title"])
        assert doc["top"][0].endswith("raises the risk" if doc["features"][0]["contribution"] > 0 else "lowers the risk")

    status, without = post(url, infer_body(rows, []))
    assert status == 200 and "explanation" not in [o["name"] for o in without["outputs"]]


def test_the_explanation_over_grpc_equals_rest(stack, bundles, heart_schema):
    rows = complete_rows(heart_schema, 3, seed=22)
    endpoint = stack.endpoints["heart-disease"]

    async def main():
        client = InferenceGRPCClient(endpoint.grpc_target, timeout=30)
        try:
            tensor = InferInput("features", list(rows.shape), "FP64")
            tensor.set_data_from_numpy(rows, binary_data=True)
            return await client.infer(InferRequest("heart-disease", [tensor],
                                                   request_outputs=[RequestedOutput("explanation")]))
        finally:
            await client.close()

    out = {o.name: o.as_numpy() for o in asyncio.run(main()).outputs}
    grpc_docs = [json.loads(v.decode() if isinstance(v, bytes) else v) for v in out["explanation"]]
    _, answer = post(f"{endpoint.rest_url}/v2/models/heart-disease/infer", infer_body(rows, ["explanation"]))
    rest_docs = [json.loads(doc) for doc in answer["outputs"][0]["data"]]
    assert [d["top"] for d in grpc_docs] == [d["top"] for d in rest_docs]
    np.testing.assert_allclose([d["model_output"] for d in grpc_docs], log_odds(bundles, rows), atol=ADDITIVITY_TOL)


def test_v1_explain_answers_predictions_and_explanations(stack, bundles, heart_schema):
    rows = complete_rows(heart_schema, 2, seed=23)
    order = list(heart_schema.feature_order)
    instances = [dict(zip(order, map(float, row), strict=True)) for row in rows]
    instances[0]["cp"] = heart_schema.feature("cp").codes[int(rows[0, order.index("cp")])]  # a label as text
    status, answer = post(f"{stack.endpoints['heart-disease'].rest_url}/v1/models/heart-disease:explain",
                          {"instances": instances})
    assert status == 200
    assert [set(p) for p in answer["predictions"]] == [{"probability", "prediction", "risk_level"}] * 2
    expected = joblib.load(bundles["heart-disease"] / "model.joblib").predict_proba(rows)[:, 1]
    np.testing.assert_allclose([p["probability"] for p in answer["predictions"]], expected, rtol=1e-6)
    np.testing.assert_allclose([d["model_output"] for d in answer["explanations"]], log_odds(bundles, rows),
                               atol=ADDITIVITY_TOL)


def test_explain_refuses_bad_input_with_the_same_400_as_infer(stack, heart_schema):
    endpoint = stack.endpoints["heart-disease"]
    rows = complete_rows(heart_schema, 1, seed=24)
    order = list(heart_schema.feature_order)
    rows[0, order.index("age")] = 500
    before = rejections(endpoint.rest_url).get(("heart-disease", "out_of_range"), 0)
    per_feature = {"inputs": [{"name": n, "shape": [1], "datatype": "FP64", "data": [float(v)]}
                              for n, v in zip(order, rows[0], strict=True)]}
    infer_status, infer_answer = post(f"{endpoint.rest_url}/v2/models/heart-disease/infer", per_feature)
    explain_status, explain_answer = post(f"{endpoint.rest_url}/v1/models/heart-disease:explain",
                                          {"instances": [dict(zip(order, map(float, rows[0]), strict=True))]})
    assert infer_status == explain_status == 400
    assert infer_answer == explain_answer == {"error": "input 'age' element 0: 500 is outside [1, 120] years"}
    assert rejections(endpoint.rest_url)[("heart-disease", "out_of_range")] == before + 2

    status, answer = post(f"{endpoint.rest_url}/v1/models/heart-disease:explain", {"instances": [{"age": 50}]})
    assert status == 400 and answer["error"].startswith("instance 0: missing feature 'sex'")
