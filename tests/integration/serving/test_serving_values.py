"""The real stack answers with the models' own numbers through four third-party V2 clients."""

import asyncio
import base64

import joblib
import numpy as np
import pytest
import torch
import tritonclient.http as triton_http
from images import encode, random_image, reference_tensor
from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest
from support import sample_bundles
from support.triton import triton_grpc

from bundle.schema import CATEGORICAL

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def rows_and_expected(bundles, heart_schema, n=5, seed=7):
    rows = sample_bundles.heart_rows(heart_schema, n, seed)
    expected = joblib.load(bundles["heart-disease"] / "model.joblib").predict_proba(rows)[:, 1]
    return rows, expected


def per_feature_inputs(rows, schema):
    """One input per feature; categoricals as text labels, missing as null (JSON)."""
    inputs = []
    for j, feature in enumerate(schema.features):
        column = rows[:, j]
        if feature.kind == CATEGORICAL:
            data = [None if np.isnan(v) else feature.codes[int(v)] for v in column]
            inputs.append(InferInput(feature.name, [len(rows)], "BYTES", data))
        else:
            inputs.append(InferInput(feature.name, [len(rows)], "FP64",
                                     [None if np.isnan(v) else float(v) for v in column]))
    return inputs


def risk_of(p):
    return ["High" if x >= 0.6 else "Medium" if x >= 0.3 else "Low" for x in p]


def test_kserve_rest_client_per_feature_labels_and_nulls(stack, bundles, heart_schema):
    rows, expected = rows_and_expected(bundles, heart_schema)

    async def main():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        try:
            request = InferRequest("heart-disease", per_feature_inputs(rows, heart_schema), request_id="r-1")
            return await client.infer(stack.endpoints["heart-disease"].rest_url, request, model_name="heart-disease")
        finally:
            await client.close()

    response = asyncio.run(main())
    out = {o.name: o.as_numpy() for o in response.outputs}
    np.testing.assert_allclose(out["probability"], expected, rtol=1e-6, atol=1e-7)
    assert ((0 <= out["probability"]) & (out["probability"] <= 1)).all()
    assert out["prediction"].tolist() == (expected >= 0.5).astype(int).tolist()
    assert [v.decode() if isinstance(v, bytes) else v for v in out["risk_level"]] == risk_of(expected)
    assert response.id == "r-1"


def test_kserve_grpc_client_features_matrix(stack, bundles, heart_schema):
    rows, expected = rows_and_expected(bundles, heart_schema, n=4, seed=11)

    async def main():
        client = InferenceGRPCClient(stack.endpoints["heart-disease"].grpc_target, timeout=30)
        try:
            tensor = InferInput("features", list(rows.shape), "FP64")
            tensor.set_data_from_numpy(rows, binary_data=True)
            return await client.infer(InferRequest("heart-disease", [tensor]))
        finally:
            await client.close()

    out = {o.name: o.as_numpy() for o in asyncio.run(main()).outputs}
    np.testing.assert_allclose(out["probability"], expected, rtol=1e-6, atol=1e-7)
    assert out["prediction"].dtype == np.int32


def test_tritonclient_http_binary_and_grpc_agree_with_predict_proba(stack, bundles, heart_schema):
    rows, expected = rows_and_expected(bundles, heart_schema, n=3, seed=5)
    endpoint = stack.endpoints["heart-disease"]
    http = triton_http.InferenceServerClient(endpoint.rest_url.removeprefix("http://"))
    tensor = triton_http.InferInput("features", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows, binary_data=True)
    outputs = [triton_http.InferRequestedOutput(n, binary_data=True) for n in ("probability", "risk_level")]
    result = http.infer("heart-disease", [tensor], outputs=outputs)
    np.testing.assert_allclose(result.as_numpy("probability"), expected, rtol=1e-6, atol=1e-7)
    assert [v.decode() for v in result.as_numpy("risk_level")] == risk_of(expected)

    result = triton_grpc(endpoint.grpc_target, "heart-disease", [("features", "FP64", rows)])
    assert result["status"] == "OK" and result["ready"] and http.is_server_ready()
    np.testing.assert_allclose(result["outputs"]["probability"], expected, rtol=1e-6, atol=1e-7)
    assert result["outputs"]["risk_level"] == risk_of(expected)


def expected_pneumonia(bundles, files):
    import json

    image = json.loads((bundles["pneumonia"] / "schema.json").read_text())["image"]
    x = np.stack([reference_tensor(f, image["height"], image["width"], image["channels"], image["mean"],
                                   image["std"]) for f in files])
    module = torch.jit.load(str(bundles["pneumonia"] / "model.pt"))
    with torch.inference_mode():
        logits, _ = module(torch.from_numpy(x))
    return torch.softmax(logits, dim=1)[:, 1].numpy()


def test_pneumonia_images_over_rest_json_binary_and_grpc(stack, bundles):
    files = [encode(random_image(60, 50, 1, seed=1), "PNG"), encode(random_image(41, 77, 3, seed=2), "JPEG")]
    expected = expected_pneumonia(bundles, files)
    endpoint = stack.endpoints["pneumonia"]

    async def kserve_rest():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        try:
            data = [base64.b64encode(f).decode() for f in files]
            return await client.infer(endpoint.rest_url, InferRequest("pneumonia", [InferInput("image", [2], "BYTES",
                                                                                               data)]),
                                      model_name="pneumonia")
        finally:
            await client.close()

    out = {o.name: o.as_numpy() for o in asyncio.run(kserve_rest()).outputs}
    np.testing.assert_allclose(out["probability"], expected, rtol=1e-5, atol=1e-6)
    labels = ["PNEUMONIA" if p >= 0.5 else "NORMAL" for p in expected]
    assert [v.decode() if isinstance(v, bytes) else v for v in out["label"]] == labels

    http = triton_http.InferenceServerClient(endpoint.rest_url.removeprefix("http://"))
    tensor = triton_http.InferInput("image", [2], "BYTES")
    tensor.set_data_from_numpy(np.array(files, dtype=object), binary_data=True)  # raw bytes, binary extension
    result = http.infer("pneumonia", [tensor])
    np.testing.assert_allclose(result.as_numpy("probability"), expected, rtol=1e-5, atol=1e-6)

    result = triton_grpc(endpoint.grpc_target, "pneumonia", [("image", "BYTES", np.array(files, dtype=object))])
    np.testing.assert_allclose(result["outputs"]["probability"], expected, rtol=1e-5, atol=1e-6)
    assert result["outputs"]["label"] == labels


def test_every_process_exposes_clinops_metrics(stack):
    import urllib.request

    for endpoint in stack.endpoints.values():
        for url in (endpoint.rest_url, endpoint.predictor_rest_url):
            text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
            assert f'clinops_requests_total{{model="{endpoint.workload}",status="200"}}' in text
            assert "clinops_stage_latency_seconds_bucket" in text
    text = urllib.request.urlopen(f"{stack.endpoints['heart-disease'].predictor_rest_url}/metrics").read().decode()
    assert 'clinops_batch_size_count{model="heart-disease"}' in text
