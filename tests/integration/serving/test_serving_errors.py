"""Every malformed request is a 400 (gRPC INVALID_ARGUMENT) naming the input and the problem; unknown
model 404; nothing makes a server answer 500 or die."""

import asyncio
import base64
import json
import random
import struct
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from images import encode, png_bomb_header, random_image
from kserve import InferenceGRPCClient
from kserve.protocol.infer_type import InferInput, InferRequest
from support import fuzz
from support.triton import triton_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROW = {"age": 63, "sex": "male", "cp": "asymptomatic", "trestbps": 145, "chol": 233, "fbs": 1, "restecg": 2,
       "thalach": 150, "exang": 0, "oldpeak": 2.3, "slope": 3, "ca": 0, "thal": "fixed defect"}


def heart_body(**overrides) -> dict:
    row = {**ROW, **overrides}
    return {"inputs": [{"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "FP64", "data": [v]}
                       for k, v in row.items() if v != "DROP"]}


def post(url: str, body, headers=None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        text = err.read()
        try:
            return err.code, json.loads(text)
        except ValueError:
            return err.code, {"error": text.decode(errors="replace")}


def image_body(*files: bytes) -> dict:
    return {"inputs": [{"name": "image", "shape": [len(files)], "datatype": "BYTES",
                        "data": [base64.b64encode(f).decode() for f in files]}]}


HEART_CASES = [
    (heart_body(thal="DROP"), "missing input 'thal'"),
    ({"inputs": heart_body()["inputs"] + [{"name": "bmi", "shape": [1], "datatype": "FP64", "data": [22]}]},
     "unknown input 'bmi'"),
    ({"inputs": heart_body()["inputs"] + [{"name": "features", "shape": [1, 13], "datatype": "FP64",
                                           "data": [0] * 13}]}, "extra input"),
    (heart_body(age="old"), "input 'age': numeric feature needs a numeric datatype"),
    ({"inputs": [{"name": "features", "shape": [1, 12], "datatype": "FP64", "data": [1] * 12}]},
     "input 'features': shape [1, 12] must be [N, 13]"),
    ({"inputs": [{"name": "features", "shape": [2, 13], "datatype": "FP64", "data": [1] * 13}]},
     "input 'features': 13 elements do not fit shape [2, 13]"),
    (heart_body(chol=900), "input 'chol' element 0: 900 is outside [70, 700] mg/dl"),
    (heart_body(cp="chest pain"), "input 'cp' element 0: unknown category 'chest pain'"),
    (heart_body(cp=7), "input 'cp' element 0: unknown code 7 for 'cp'"),
    (heart_body(age=None), "input 'age' element 0: a value is required ('age' is not nullable)"),
    ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP99", "data": [1]}]}, "unknown datatype 'FP99'"),
    ({"inputs": []}, "no 'inputs'"),
    ({"input": [1]}, "no 'inputs'"),
]


@pytest.mark.parametrize(("body", "fragment"), HEART_CASES)
def test_heart_disease_rest_errors(stack, body, fragment):
    status, answer = post(stack.endpoints["heart-disease"].infer_url, body)
    assert status == 400, answer
    assert fragment in answer["error"]


def test_bad_json_body_limit_unknown_model_and_v1(stack):
    endpoint = stack.endpoints["heart-disease"]
    status, answer = post(endpoint.infer_url, b'{"inputs": [')
    assert status == 400 and "not valid JSON" in answer["error"]
    status, answer = post(endpoint.infer_url, b'{"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", '
                                              b'"data": [1]}], "pad": "' + b"x" * (3 * 1024 * 1024) + b'"}')
    assert status == 400 and "exceeds the limit of 2097152 bytes" in answer["error"]
    status, answer = post(f"{endpoint.rest_url}/v2/models/no-such-model/infer", heart_body())
    assert status == 404 and "no-such-model does not exist" in answer["error"]
    status, answer = post(f"{endpoint.rest_url}/v2/models/heart-disease/infer",
                          b"{\"inputs\": [{\"name\": \"age\", \"shape\": \"one\", \"datatype\": \"FP64\", \"data\": [1]}]}")
    assert status == 400 and "shape must be a list" in answer["error"]


def test_binary_extension_errors(stack):
    endpoint = stack.endpoints["heart-disease"]
    header = json.dumps({"inputs": [{"name": "features", "shape": [1, 13], "datatype": "FP64",
                                     "parameters": {"binary_data_size": 104}}]}).encode()
    good = header + struct.pack("<13d", *[63, 1, 4, 145, 233, 1, 2, 150, 0, 2.3, 3, 0, 6])
    headers = {"Inference-Header-Content-Length": str(len(header)), "content-type": "application/octet-stream"}
    assert post(endpoint.infer_url, good, headers)[0] == 200
    status, answer = post(endpoint.infer_url, good[:-8], headers)
    assert status == 400 and "runs past the end of the body" in answer["error"]
    status, answer = post(endpoint.infer_url, good, {**headers, "Inference-Header-Content-Length": "abc"})
    assert status == 400 and "must be a non-negative integer" in answer["error"]
    status, answer = post(endpoint.infer_url, good, {**headers, "Inference-Header-Content-Length": "99999"})
    assert status == 400 and "exceeds the body" in answer["error"]


PNEUMONIA_CASES = [
    (image_body(b"hello, not an image"), "input 'image' element 0: not a decodable JPEG or PNG image"),
    (image_body(encode(random_image(64, 64))[:120]), "input 'image' element 0: truncated or corrupt PNG"),
    (image_body(png_bomb_header()), "input 'image' element 0: image over the pixel limit"),
    (image_body(encode(random_image(9, 9), "BMP")), "BMP image; JPEG or PNG needed"),
    ({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["%%%"]}]}, "not valid base64"),
    ({"inputs": [{"name": "image", "shape": [1], "datatype": "FP32", "data": [1.0]}]}, "datatype FP32; BYTES needed"),
    ({"inputs": [{"name": "picture", "shape": [1], "datatype": "BYTES", "data": ["eA=="]}]}, "missing input 'image'"),
]


@pytest.mark.parametrize(("body", "fragment"), PNEUMONIA_CASES)
def test_pneumonia_rest_errors(stack, body, fragment):
    status, answer = post(stack.endpoints["pneumonia"].infer_url, body)
    assert status == 400, answer
    assert fragment in answer["error"]


def test_grpc_errors_are_invalid_argument_and_not_found(stack):
    async def call(target, request):
        client = InferenceGRPCClient(target, timeout=30, retries=0)
        try:
            await client.infer(request)
        except grpc.RpcError as err:
            return err.code(), err.details()
        finally:
            await client.close()
        return grpc.StatusCode.OK, ""

    heart = stack.endpoints["heart-disease"].grpc_target
    code, details = asyncio.run(call(heart, InferRequest("heart-disease", [InferInput("features", [1, 13], "FP64",
                                                                                      [1000.0] * 13)])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "input 'features' row 0 ('age'): 1000 is outside" in details
    code, details = asyncio.run(call(heart, InferRequest("nope", [InferInput("features", [1, 13], "FP64", [1.0] * 13)])))
    assert code == grpc.StatusCode.NOT_FOUND and "nope does not exist" in details
    result = triton_grpc(stack.endpoints["pneumonia"].grpc_target, "pneumonia",
                         [("image", "BYTES", np.array([b"\x89PNG\r\n\x1a\ntruncated"], dtype=object))])
    assert result["status"] == "StatusCode.INVALID_ARGUMENT" and "input 'image' element 0" in result["message"]


def test_fuzzed_requests_never_give_500_nor_kill_a_process(stack):
    rng = random.Random(1234)
    valid = [(stack.endpoints["heart-disease"].infer_url, json.dumps(heart_body()).encode()),
             (stack.endpoints["pneumonia"].infer_url, json.dumps(image_body(encode(random_image(20, 20)))).encode())]
    statuses = {}
    for i in range(400):
        url, body = valid[i % 2]
        action = rng.choice(fuzz.BODY_MUTATIONS)
        data = fuzz.mutate(rng, body, action)
        status, answer = post(url, bytes(data))
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, f"{action} gave {status}: {answer} for {bytes(data)[:300]!r}"
    assert set(statuses) <= {200, 400, 404}, statuses
    assert all(stack.alive().values())
