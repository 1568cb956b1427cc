"""Seeded fuzzing of the gRPC endpoints of every transformer and predictor, and of the predictors' REST
endpoints (the transformers' REST is fuzzed in test_serving_errors.py): no INTERNAL / UNKNOWN / 5xx ever,
and every INVALID_ARGUMENT / 400 names its cause: it carries a message and is counted under one reason of
``clinops_rejected_inputs_total`` (the counter grows by exactly the number of refusals)."""

import json
import random
import struct

import grpc
import numpy as np
import pytest
from images import encode, random_image
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as services
from support import fuzz
from support.v2_calls import post, rejections

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CODES = [63, 1, 4, 145, 233, 1, 2, 150, 0, 2.3, 3, 0, 6]
FEATURES = ["age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang", "oldpeak", "slope", "ca",
            "thal"]
MUTATIONS_PER_TARGET = 80


def features_raw(model: str) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name=model, inputs=[pb.ModelInferRequest.InferInputTensor(
        name="features", datatype="FP64", shape=[1, 13])], raw_input_contents=[np.asarray(CODES, "<f8").tobytes()])


def features_per_input(model: str) -> pb.ModelInferRequest:
    inputs = []
    for name, code in zip(FEATURES, CODES, strict=True):
        if name == "sex":
            inputs.append(pb.ModelInferRequest.InferInputTensor(name=name, datatype="BYTES", shape=[1],
                                                                contents=pb.InferTensorContents(bytes_contents=[b"male"])))
        else:
            inputs.append(pb.ModelInferRequest.InferInputTensor(name=name, datatype="FP64", shape=[1],
                                                                contents=pb.InferTensorContents(fp64_contents=[code])))
    return pb.ModelInferRequest(model_name=model, inputs=inputs)


def image_raw(model: str) -> pb.ModelInferRequest:
    file = encode(random_image(20, 20))
    return pb.ModelInferRequest(model_name=model, inputs=[pb.ModelInferRequest.InferInputTensor(
        name="image", datatype="BYTES", shape=[1])], raw_input_contents=[struct.pack("<I", len(file)) + file])


def pixels_raw(model: str) -> pb.ModelInferRequest:
    pixels = np.zeros((1, 1, 32, 28), dtype=np.uint8)
    return pb.ModelInferRequest(model_name=model, inputs=[pb.ModelInferRequest.InferInputTensor(
        name="input", datatype="UINT8", shape=[1, 1, 32, 28])], raw_input_contents=[pixels.tobytes()])


def targets(stack):
    heart, pneumonia = stack.endpoints["heart-disease"], stack.endpoints["pneumonia"]
    return [("heart-disease transformer", heart.grpc_target, heart.rest_url, "heart-disease",
             [features_raw, features_per_input]),
            ("heart-disease predictor", heart.predictor_grpc_target, heart.predictor_rest_url, "heart-disease",
             [features_raw]),
            ("pneumonia transformer", pneumonia.grpc_target, pneumonia.rest_url, "pneumonia", [image_raw]),
            ("pneumonia predictor", pneumonia.predictor_grpc_target, pneumonia.predictor_rest_url, "pneumonia",
             [pixels_raw])]


def test_fuzzed_grpc_requests_are_answered_or_refused_by_name(stack):
    rng = random.Random(20261124)
    for label, target, rest_url, model, builders in targets(stack):
        before = rejections(rest_url)
        with grpc.insecure_channel(target) as channel:
            stub = services.GRPCInferenceServiceStub(channel)
            valid = [build(model) for build in builders]
            for request in valid:
                assert stub.ModelInfer(request, timeout=30).outputs, label
            codes, refused = {}, 0
            for i in range(MUTATIONS_PER_TARGET):
                action = rng.choice(fuzz.GRPC_MUTATIONS)
                request = fuzz.mutate_grpc(rng, valid[i % len(valid)], action)
                try:
                    stub.ModelInfer(request, timeout=30)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as err:
                    code = err.code()
                    assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{label} {action}: {code} {err.details()}\n{request}"
                    assert err.details(), f"{label} {action}: no message"
                    refused += 1
                codes[code.name] = codes.get(code.name, 0) + 1
        after = rejections(rest_url)
        counted = sum(v - before.get(k, 0.0) for k, v in after.items() if k[0] == model)
        assert counted == refused, f"{label}: {refused} refused, {counted} counted ({codes})"
        assert refused > MUTATIONS_PER_TARGET // 2, f"{label}: the mutations hardly broke anything ({codes})"
    assert all(stack.alive().values())


def predictor_bodies(stack):
    heart, pneumonia = stack.endpoints["heart-disease"], stack.endpoints["pneumonia"]
    heart_body = {"inputs": [{"name": "features", "shape": [2, 13], "datatype": "FP64", "data": CODES * 2}]}
    pixels = {"inputs": [{"name": "input", "shape": [1, 1, 32, 28], "datatype": "UINT8", "data": [0] * (32 * 28)}]}
    return [(heart.predictor_rest_url, "heart-disease", heart_body), (pneumonia.predictor_rest_url, "pneumonia", pixels)]


def test_fuzzed_rest_requests_to_the_predictors(stack):
    rng = random.Random(4321)
    for rest_url, model, body in predictor_bodies(stack):
        url, valid = f"{rest_url}/v2/models/{model}/infer", json.dumps(body).encode()
        assert post(url, valid)[0] == 200
        before, refused, statuses = rejections(rest_url), 0, {}
        for _ in range(MUTATIONS_PER_TARGET):
            action = rng.choice(fuzz.BODY_MUTATIONS)
            data = fuzz.mutate(rng, valid, action)
            status, answer = post(url, data)
            statuses[status] = statuses.get(status, 0) + 1
            assert status in (200, 400), f"{model} {action} gave {status}: {answer} for {data[:300]!r}"
            if status == 400:
                assert answer.get("error"), answer
                refused += 1
        counted = sum(v - before.get(k, 0.0) for k, v in rejections(rest_url).items() if k[0] == model)
        assert counted == refused, f"{model}: {refused} refused, {counted} counted ({statuses})"
    assert all(stack.alive().values())
