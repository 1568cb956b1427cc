"""No request payload reaches a log, at DEBUG level with access logging on, over REST and gRPC."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from kserve import InferenceGRPCClient
from kserve.protocol.infer_type import InferInput, InferRequest

from pipelines.local_stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MARK = 61.98765432  # a valid age nobody else sends
ROW = [MARK, 1, 4, 145, 233, 1, 2, 150, 0, 2.3, 3, 0, 6]


def _post(url: str, body: dict) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


async def _grpc(target: str) -> None:
    client = InferenceGRPCClient(target, timeout=30, retries=0)
    try:
        await client.infer(InferRequest("heart-disease", [InferInput("features", [1, 13], "FP64", ROW)]))
    finally:
        await client.close()


def test_no_payload_value_in_any_log_at_debug(bundles, tmp_path):
    debug = ["--log_requests"]
    with LocalStack({"heart-disease": str(bundles["heart-disease"])}, ports="ephemeral", log_dir=tmp_path / "logs",
                    drift_dir=tmp_path / "drift", ready_timeout_s=120, env={"KSERVE_LOGLEVEL": "DEBUG"},
                    extra_args={"heart-disease/transformer": debug, "heart-disease/predictor": debug}) as stack:
        endpoint = stack.endpoints["heart-disease"]
        good = {"inputs": [{"name": "features", "shape": [1, 13], "datatype": "FP64", "data": ROW}]}
        assert _post(endpoint.infer_url, good) == 200
        bad = {"inputs": [{"name": "features", "shape": [1, 12], "datatype": "FP64", "data": ROW[:12]}]}
        assert _post(endpoint.infer_url, bad) == 400
        asyncio.run(_grpc(endpoint.grpc_target))
        logs = {key: p.log_path for key, p in stack.processes.items()}
    texts = {key: path.read_text(errors="replace") for key, path in logs.items()}
    assert len(texts) == 3 and all(texts.values())
    # the verbose lines really were written: access lines, the rejection's traceback, the gRPC method
    transformer = texts["heart-disease/transformer"]
    assert '"POST /v2/models/heart-disease/infer HTTP/1.1" 400' in transformer
    assert "shape [1, 12] must be [N, 13]" in transformer and "GRPCInferenceService/ModelInfer" in transformer
    for key, text in texts.items():
        assert str(MARK) not in text and "61.987" not in text, key
