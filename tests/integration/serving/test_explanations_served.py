"""Explanations from real stacks: heart-disease's ``explanation`` output and pneumonia's ``heatmap`` /
``hot_region`` over V2 REST and gRPC, KServe's V1 ``:explain`` verb, and bad input refused by explain with
the same 400 as by infer."""

import asyncio
import base64
import io
import json

import joblib
import numpy as np
import pytest
from kserve import InferenceGRPCClient
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput
from PIL import Image
from support import sample_bundles
from support.v2_calls import post, rejections

from pipelines.local_stack import LocalStack

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


@pytest.fixture(scope="module")
def opacity_stack(tmp_path_factory):
    """pneumonia served with a net that answers to a bright opacity (its Grad-CAM peaks on it)."""
    folder = sample_bundles.write_pneumonia(tmp_path_factory.mktemp("opacity"), 32, 28, 1,
                                            module=sample_bundles.opacity_net(1, 4), embedding_dim=4)
    with LocalStack({"pneumonia": str(folder)}, ports="ephemeral", log_dir=tmp_path_factory.mktemp("logs"),
                    drift_dir=tmp_path_factory.mktemp("drift"), ready_timeout_s=120,
                    extra_args={"pneumonia/predictor": ["--device", "cpu"]}) as running:
        yield running


def png_file(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def planted_files(n, seed):
    rng = np.random.default_rng(seed)
    images, disks = zip(*(sample_bundles.opacity_image(rng, 32, 28) for _ in range(n)), strict=True)
    return [png_file(image) for image in images], disks


def assert_boxes_hold_the_disks(regions, disks):
    for (x0, y0, x1, y1), (cx, cy, _) in zip(regions, disks, strict=True):
        assert x0 * 28 <= cx < x1 * 28 and y0 * 32 <= cy < y1 * 32
        assert (x1 - x0) * 28 <= 14 and (y1 - y0) * 32 <= 14  # a region, not the whole image


def test_heatmap_and_hot_region_over_rest_json_and_grpc(opacity_stack):
    endpoint = opacity_stack.endpoints["pneumonia"]
    files, disks = planted_files(3, seed=31)
    body = {"inputs": [{"name": "image", "shape": [3], "datatype": "BYTES",
                        "data": [base64.b64encode(f).decode() for f in files]}],
            "outputs": [{"name": "probability"}, {"name": "heatmap"}, {"name": "hot_region"}]}
    status, answer = post(f"{endpoint.rest_url}/v2/models/pneumonia/infer", body)
    assert status == 200
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert list(outputs) == ["probability", "heatmap", "hot_region"]
    assert outputs["heatmap"]["parameters"] == {"clinops_base64": True}
    pngs = [Image.open(io.BytesIO(base64.b64decode(text))) for text in outputs["heatmap"]["data"]]
    assert [(p.format, p.size) for p in pngs] == [("PNG", (28, 32))] * 3
    regions = np.asarray(outputs["hot_region"]["data"]).reshape(3, 4)
    assert_boxes_hold_the_disks(regions, disks)
    _, plain = post(f"{endpoint.rest_url}/v2/models/pneumonia/infer", {"inputs": body["inputs"]})
    assert [o["name"] for o in plain["outputs"]] == ["probability", "label"]  # no heatmap unless asked for
    np.testing.assert_allclose(outputs["probability"]["data"], plain["outputs"][0]["data"], rtol=1e-5)

    async def grpc():
        client = InferenceGRPCClient(endpoint.grpc_target, timeout=30)
        try:
            tensor = InferInput("image", [3], "BYTES", files)
            return await client.infer(InferRequest("pneumonia", [tensor], request_outputs=[
                RequestedOutput("heatmap"), RequestedOutput("hot_region")]))
        finally:
            await client.close()

    out = {o.name: o.as_numpy() for o in asyncio.run(grpc()).outputs}
    assert Image.open(io.BytesIO(bytes(out["heatmap"][0]))).format == "PNG"  # raw bytes over gRPC
    np.testing.assert_allclose(out["hot_region"], regions, atol=1e-6)


def test_v1_explain_of_images_and_its_400s(opacity_stack):
    endpoint = opacity_stack.endpoints["pneumonia"]
    files, disks = planted_files(2, seed=32)
    status, answer = post(f"{endpoint.rest_url}/v1/models/pneumonia:explain",
                          {"instances": [{"b64": base64.b64encode(f).decode()} for f in files]})
    assert status == 200
    assert [set(p) for p in answer["predictions"]] == [{"probability", "label"}] * 2
    assert_boxes_hold_the_disks([e["hot_region"] for e in answer["explanations"]], disks)
    assert Image.open(io.BytesIO(base64.b64decode(answer["explanations"][0]["heatmap"]))).size == (28, 32)

    garbage = base64.b64encode(b"not an image").decode()
    infer = post(f"{endpoint.rest_url}/v2/models/pneumonia/infer",
                 {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [garbage]}]})
    explain = post(f"{endpoint.rest_url}/v1/models/pneumonia:explain", {"instances": [{"b64": garbage}]})
    assert infer == explain == (400, {"error": "input 'image' element 0: not a decodable JPEG or PNG image"})
