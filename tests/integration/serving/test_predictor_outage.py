"""Predictor killed → the transformer answers 503 (gRPC UNAVAILABLE); predictor back → 200 again,
without restarting the transformer. Checked for both transformer → predictor protocols."""

import asyncio
import json
import time
import urllib.error
import urllib.request

import grpc
import pytest
from kserve import InferenceGRPCClient
from kserve.protocol.infer_type import InferInput, InferRequest

from pipelines.local_stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROW = [63.0, 1, 4, 145, 233, 1, 2, 150, 0, 2.3, 3, 0, 6]
BODY = json.dumps({"inputs": [{"name": "features", "shape": [1, 13], "datatype": "FP64", "data": ROW}]}).encode()


def rest_status(url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, data=BODY, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def grpc_status(target: str) -> tuple[grpc.StatusCode, str]:
    async def call():
        client = InferenceGRPCClient(target, timeout=30, retries=0)
        try:
            await client.infer(InferRequest("heart-disease", [InferInput("features", [1, 13], "FP64", ROW)]))
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as err:
            return err.code(), err.details()
        finally:
            await client.close()

    return asyncio.run(call())


@pytest.mark.parametrize("protocol", ["v2", "grpc-v2"])
def test_predictor_outage_is_503_and_recovers_by_itself(bundles, tmp_path, protocol):
    with LocalStack({"heart-disease": str(bundles["heart-disease"])}, ports="ephemeral", predictor_protocol=protocol,
                    log_dir=tmp_path, ready_timeout_s=120,
                    extra_args={"heart-disease/transformer": ["--predictor_retries", "1",
                                                              "--predictor_timeout_s", "5"]}) as stack:
        endpoint = stack.endpoints["heart-disease"]
        transformer_pid = stack.processes["heart-disease/transformer"].popen.pid
        assert rest_status(endpoint.infer_url)[0] == 200

        stack.kill_predictor("heart-disease")
        status, text = rest_status(endpoint.infer_url)
        assert status == 503, text
        assert "predictor at" in text and "unavailable" in text
        code, details = grpc_status(endpoint.grpc_target)
        assert code == grpc.StatusCode.UNAVAILABLE and "unavailable" in details

        stack.start_predictor("heart-disease")
        deadline = time.monotonic() + 15
        while rest_status(endpoint.infer_url)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert rest_status(endpoint.infer_url)[0] == 200
        assert grpc_status(endpoint.grpc_target)[0] == grpc.StatusCode.OK
        assert stack.processes["heart-disease/transformer"].popen.pid == transformer_pid
        assert all(stack.alive().values())
