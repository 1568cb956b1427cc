"""Checks in front of KServe (gRPC tensors, nesting, versioned paths), model metadata, and the images'
decode budget, without a server."""

import asyncio
import base64

import numpy as np
import orjson
import pytest
from images import encode, random_image
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferInput
from prometheus_client import REGISTRY

import bundle
from inference import grpc_decode, kserve_patches
from inference.envelope import BadRequest, nesting_over
from inference.errors import RejectedInput
from inference.reasons import Reason
from inference.transformer.pneumonia import PneumoniaCodec
from inference.transformer.settings import TransformerSettings
from inference.versioned_paths import VersionedPaths

pytestmark = pytest.mark.unit


def rejected(model: str, reason: str) -> float:
    return REGISTRY.get_sample_value("clinops_rejected_inputs_total", {"model": model, "reason": reason}) or 0.0


def tensor(name, datatype, shape, **contents):
    return pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape,
                                                 contents=pb.InferTensorContents(**contents) if contents else None)


FOUR = np.zeros(4, dtype="<f4").tobytes()
CASES = [
    ([tensor("x", "FP32", [4])], [FOUR, FOUR], Reason.BINARY, "2 raw_input_contents for 1 inputs"),
    ([tensor("x", "FP32", [4], fp32_contents=[0] * 4)], [FOUR], Reason.BINARY, "contents and raw_input_contents"),
    ([tensor("x", "FP32", [5])], [FOUR], Reason.SHAPE, "16 bytes do not hold shape [5] of FP32 (20 bytes)"),
    ([tensor("x", "FP32", [-4], fp32_contents=[0] * 4)], [], Reason.SHAPE, "shape [-4] has a negative dimension"),
    ([tensor("x", "FP32", [2 ** 62], fp32_contents=[0] * 4)], [], Reason.SHAPE, f"holds {2 ** 62} elements; 4 were"),
    ([tensor("x", "F32", [4], fp32_contents=[0] * 4)], [], Reason.DATATYPE, "unknown datatype 'F32'"),
    ([tensor("x", "FP32", [4], fp64_contents=[0] * 4)], [], Reason.DATATYPE, "FP32 data must be in fp32_contents, "
                                                                            "not fp64_contents"),
    ([tensor("x", "FP16", [4])], [], Reason.DATATYPE, "FP16 data must be sent in raw_input_contents"),
]


@pytest.mark.parametrize(("inputs", "raw", "reason", "fragment"), CASES)
def test_malformed_grpc_tensors_are_refused_by_name_and_counted(monkeypatch, inputs, raw, reason, fragment):
    monkeypatch.setattr(grpc_decode, "served", frozenset({"m"}))
    before = rejected("m", reason.value)
    with pytest.raises(RejectedInput) as raised:
        grpc_decode.check(pb.ModelInferRequest(model_name="m", inputs=inputs, raw_input_contents=raw))
    assert raised.value.kind is reason and fragment in str(raised.value.reason)
    assert rejected("m", reason.value) == before + 1


def test_well_formed_grpc_tensors_pass_and_unserved_names_are_counted_as_unknown(monkeypatch):
    monkeypatch.setattr(grpc_decode, "served", frozenset({"m"}))
    grpc_decode.check(pb.ModelInferRequest(model_name="m", inputs=[tensor("x", "FP32", [1, 4])], raw_input_contents=[FOUR]))
    grpc_decode.check(pb.ModelInferRequest(model_name="m", inputs=[tensor("x", "BYTES", [2], bytes_contents=[b"a", b""])]))
    before = rejected("unknown", "shape")
    with pytest.raises(RejectedInput):
        grpc_decode.check(pb.ModelInferRequest(model_name="made-up", inputs=[tensor("x", "FP32", [-1])]))
    assert rejected("unknown", "shape") == before + 1 and rejected("made-up", "shape") == 0


def test_nesting_is_measured_without_recursion():
    assert not nesting_over([1, 2, 3], 1) and nesting_over([[1]], 1) and not nesting_over([[1], 2], 2)
    deep = [1]
    for _ in range(100_000):  # far past Python's recursion limit
        deep = [deep]
    assert nesting_over(deep, 4)


def test_model_metadata_reports_version_and_platform(monkeypatch):
    from kserve import Model
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.grpc.servicer import InferenceServicer

    monkeypatch.setattr(DataPlane, "model_metadata", DataPlane.model_metadata)
    monkeypatch.setattr(InferenceServicer, "ModelMetadata", InferenceServicer.ModelMetadata)
    assert kserve_patches._model_metadata() and not kserve_patches._model_metadata()

    class Versioned(Model):
        platform = "sklearn"

        def __init__(self):
            super().__init__("m")
            self.model_version, self.ready = "7", True

    repository = ModelRepository()
    repository.update(Versioned())
    plane = DataPlane(model_registry=repository)
    metadata = asyncio.run(plane.model_metadata("m"))
    assert (metadata["versions"], metadata["platform"]) == (["7"], "sklearn")
    answer = asyncio.run(InferenceServicer(plane, None).ModelMetadata(pb.ModelMetadataRequest(name="m"), None))
    assert (list(answer.versions), answer.platform) == (["7"], "sklearn")


async def call(app, path: str) -> tuple[int, bytes, str]:
    seen = {}

    async def inner(scope, receive, send):
        seen["path"] = scope["path"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sent = []

    async def send(message):
        sent.append(message)

    await VersionedPaths(inner, {"m": "3"})({"type": "http", "path": path, "method": "GET"}, None, send)
    return sent[0]["status"], sent[1]["body"], seen.get("path")


@pytest.mark.parametrize(("path", "status", "forwarded"), [
    ("/v2/models/m/versions/3", 200, "/v2/models/m"), ("/v2/models/m/versions/3/infer", 200, "/v2/models/m/infer"),
    ("/v2/models/m/versions/3/ready", 200, "/v2/models/m/ready"), ("/v2/models/other/versions/3", 200,
                                                                   "/v2/models/other"),
    ("/v2/models/m/versions/4/infer", 404, None), ("/v2/models/m/infer", 200, "/v2/models/m/infer")])
def test_versioned_paths(path, status, forwarded):
    got_status, body, got_path = asyncio.run(call(None, path))
    assert (got_status, got_path) == (status, forwarded)
    if status == 404:
        assert orjson.loads(body)["error"] == "Model m has no version '4'; it serves version '3'"


def test_the_decode_budget_is_checked_from_headers_before_any_decode(pneumonia_bundle):
    schema = bundle.open_bundle(pneumonia_bundle, "pneumonia").schema
    codec = PneumoniaCodec(schema, TransformerSettings(workload="pneumonia", max_request_pixels=3 * 40 * 50))
    whole = encode(random_image(40, 50))
    truncated = whole[:len(whole) // 2]  # its header is whole: only decoding it would fail
    files = [base64.b64encode(f).decode() for f in (whole, whole, whole, truncated)]
    parsed = codec.parse([InferInput("image", [4], "BYTES", files)])
    with pytest.raises(BadRequest, match=r"4 images hold 8000 pixels together, over the request's decode budget "
                                         r"of 6000 \(max_request_pixels\)") as raised:
        codec.tensor(parsed)
    assert raised.value.kind is Reason.PIXEL_BUDGET
    assert codec.tensor(parsed[:3]).shape[0] == 3  # at the budget: decoded
    with pytest.raises(BadRequest, match="truncated or corrupt PNG"):
        codec.tensor(parsed[1:])
