"""Calls to running clinops runtimes for the bad-input tests: V2 REST posts that return the status and the
answer whatever it is, raw gRPC ModelInfer calls, and the rejection counter read from ``/metrics``."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def post(url: str, body, headers: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        text = err.read()
        try:
            return err.code, json.loads(text)
        except ValueError:
            return err.code, {"error": text.decode(errors="replace")}


def get(url: str, timeout: float = 10) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def rejections(rest_url: str) -> dict[tuple[str, str], float]:
    """``clinops_rejected_inputs_total`` of one runtime, by (model, reason)."""
    with urllib.request.urlopen(f"{rest_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.labels["model"], s.labels["reason"]): s.value for family in text_string_to_metric_families(text)
            if family.name == "clinops_rejected_inputs" for s in family.samples if s.name.endswith("_total")}


def grpc_infer(target: str, request, timeout: float = 30):
    """One raw ``ModelInfer`` call: ``(status code, details)``; the response's outputs on OK."""
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as services

    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024),
                                                ("grpc.max_send_message_length", 64 * 1024 * 1024)]) as channel:
        stub = services.GRPCInferenceServiceStub(channel)
        try:
            response = stub.ModelInfer(request, timeout=timeout)
        except grpc.RpcError as err:
            return err.code(), err.details()
        return grpc.StatusCode.OK, response


def metric_total(rest_url: str, family: str, **labels: str) -> float:
    """The sum of ``<family>_total`` samples of one runtime whose labels include ``labels``."""
    with urllib.request.urlopen(f"{rest_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) if f.name == family for s in f.samples
               if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in labels.items()))
