"""A real transformer flooded past its bound of work in flight refuses at once (503 + Retry-After over REST,
UNAVAILABLE over gRPC), counts each refusal, and stays ready meanwhile."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from kserve import InferenceGRPCClient
from kserve.protocol.infer_type import InferInput, InferRequest
from test_predictor_outage import BODY, ROW

from pipelines.local_stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _post(url: str) -> tuple[int, str | None, str]:
    request = urllib.request.Request(url, data=BODY, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Retry-After"), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Retry-After"), err.read().decode()


def _get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


async def _grpc_flood(target: str, calls: int) -> list[tuple[grpc.StatusCode, str]]:
    client = InferenceGRPCClient(target, timeout=30, retries=0)

    async def one():
        try:
            await client.infer(InferRequest("heart-disease", [InferInput("features", [1, 13], "FP64", ROW)]))
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as err:
            return err.code(), err.details()

    try:
        return await asyncio.gather(*(one() for _ in range(calls)))
    finally:
        await client.close()


def _shed(metrics_url: str, reason: str = "in_flight_limit") -> float:
    with urllib.request.urlopen(metrics_url, timeout=30) as response:
        text = response.read().decode()
    match = re.search(rf'^clinops_shed_total\{{model="heart-disease",reason="{reason}"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_flooded_transformer_sheds_with_503_retry_after_and_unavailable_and_stays_ready(bundles, tmp_path):
    with LocalStack({"heart-disease": str(bundles["heart-disease"])}, ports="ephemeral", log_dir=tmp_path,
                    drift=False, ready_timeout_s=120,
                    extra_args={"heart-disease/transformer": ["--max_in_flight_rows", "1"]}) as stack:
        endpoint = stack.endpoints["heart-disease"]
        assert _post(endpoint.infer_url)[0] == 200  # alone: admitted
        assert _shed(f"{endpoint.rest_url}/metrics") == 0

        ready: list[int] = []
        flooding = threading.Event()
        flooding.set()

        def watch_readiness():
            while flooding.is_set():
                ready.append(_get_status(f"{endpoint.rest_url}/v2/health/ready"))
                ready.append(_get_status(f"{endpoint.rest_url}/v2/health/live"))

        watcher = threading.Thread(target=watch_readiness)
        watcher.start()
        try:
            with ThreadPoolExecutor(32) as pool:
                rest = list(pool.map(lambda _: _post(endpoint.infer_url), range(400)))
            over_grpc = asyncio.run(_grpc_flood(endpoint.grpc_target, 400))
        finally:
            flooding.clear()
            watcher.join()

        statuses = {status for status, _, _ in rest}
        assert statuses <= {200, 503}, statuses
        refused = [(retry, text) for status, retry, text in rest if status == 503]
        assert refused and len(refused) < len(rest)
        assert all(retry == "1" and "in flight, the bound is 1" in text for retry, text in refused)
        codes = {code for code, _ in over_grpc}
        assert codes == {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
        unavailable = [d for code, d in over_grpc if code == grpc.StatusCode.UNAVAILABLE]
        assert all("the bound is 1" in d for d in unavailable)

        assert _shed(f"{endpoint.rest_url}/metrics") == len(refused) + len(unavailable)
        assert ready and set(ready) == {200}
        assert _post(endpoint.infer_url)[0] == 200  # the flood over, admitted again


def test_past_its_request_bound_a_real_transformer_answers_503_or_unavailable_before_parsing_and_stays_ready(
        bundles, tmp_path):
    with LocalStack({"heart-disease": str(bundles["heart-disease"])}, ports="ephemeral", log_dir=tmp_path,
                    drift=False, ready_timeout_s=120,
                    extra_args={"heart-disease/transformer": ["--max_in_flight_requests", "2"]}) as stack:
        endpoint = stack.endpoints["heart-disease"]
        metrics_url = f"{endpoint.rest_url}/metrics"
        assert _post(endpoint.infer_url)[0] == 200
        with ThreadPoolExecutor(32) as pool:
            rest = list(pool.map(lambda _: _post(endpoint.infer_url), range(400)))
            ready = list(pool.map(_get_status, [f"{endpoint.rest_url}/v2/health/ready"] * 32))

        statuses = {status for status, _, _ in rest}
        assert statuses == {200, 503}, statuses
        refused = [(retry, text) for status, retry, text in rest if status == 503]
        assert all(retry == "1" and "2 inference requests are in flight, the bound (max_in_flight_requests)" in text
                   for retry, text in refused)
        answered = [json.loads(text) for status, _, text in rest if status == 200]
        assert all({o["name"] for o in a["outputs"]} >= {"probability", "prediction", "risk_level"} for a in answered)
        assert _shed(metrics_url, "requests_in_flight") == len(refused)
        over_grpc = asyncio.run(_grpc_flood(endpoint.grpc_target, 400))  # the same bound, counted across both
        assert {code for code, _ in over_grpc} == {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
        unavailable = [d for code, d in over_grpc if code == grpc.StatusCode.UNAVAILABLE]
        assert all("2 inference requests are in flight, the bound (max_in_flight_requests)" in d for d in unavailable)
        assert _shed(metrics_url, "requests_in_flight") == len(refused) + len(unavailable)
        assert _shed(metrics_url) == 0  # refused before the work bound ever saw them
        assert set(ready) == {200}
        assert _post(endpoint.infer_url)[0] == 200
