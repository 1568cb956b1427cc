"""Calls from the transformer to its predictor over V2 REST or gRPC, with a timeout per call and
bounded retries; a predictor that stays unreachable is a 503 (``PredictorUnavailable``).

Clients are KServe's own (``InferenceRESTClient`` / ``InferenceGRPCClient``); a fresh TCP connection
or gRPC reconnect happens on the next call, so the transformer recovers by itself when the predictor
is back. The gRPC channel's reconnect backoff is capped at one second for the same reason.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest, InferResponse

from inference import metrics
from inference.errors import PredictorUnavailable

log = logging.getLogger(__name__)
RETRYABLE_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"}
RETRYABLE_HTTP = {502, 503, 504}


class PredictorClient:
    def __init__(self, model_name: str, host: str, protocol: str, timeout_s: float, retries: int,
                 backoff_ms: float, use_ssl: bool = False):
        if protocol not in ("v2", "grpc-v2"):
            raise ValueError(f"predictor protocol {protocol!r}: v2 or grpc-v2 supported")
        self.model_name, self.host, self.protocol = model_name, host, protocol
        self.timeout_s, self.retries, self.backoff = timeout_s, retries, backoff_ms / 1000.0
        self.base_url = f"{'https' if use_ssl else 'http'}://{host}"
        self._rest = None
        self._grpc = None

    def _client(self):
        from kserve.inference_client import InferenceGRPCClient, InferenceRESTClient, RESTConfig

        if self.protocol == "v2":
            if self._rest is None:
                self._rest = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=self.timeout_s))
            return self._rest
        if self._grpc is None:  # created in the running loop
            self._grpc = InferenceGRPCClient(
                self.host, timeout=self.timeout_s, retries=0,
                channel_args=[("grpc.enable_retries", 0), ("grpc.max_send_message_length", -1),
                              ("grpc.max_receive_message_length", -1),
                              ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                              ("grpc.max_reconnect_backoff_ms", 1000)])
        return self._grpc

    async def infer(self, request: InferRequest) -> InferResponse:
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = await self._once(request)
                metrics.PREDICTOR_CALLS.labels(self.model_name, "ok").inc()
                return response
            except _Retryable as err:
                last = str(err)
                metrics.PREDICTOR_CALLS.labels(self.model_name, "retryable_error").inc()
                log.warning("predictor %s attempt %d/%d failed: %s", self.host, attempt + 1, self.retries + 1, last)
        raise PredictorUnavailable(self.model_name, f"predictor at {self.host} is unavailable: {last}")

    async def _once(self, request: InferRequest) -> InferResponse:
        client = self._client()
        if self.protocol == "v2":
            try:
                return await client.infer(self.base_url, data=request, model_name=self.model_name,
                                          headers={"content-type": "application/json"})
            except httpx.HTTPStatusError as err:
                status = err.response.status_code
                if status in RETRYABLE_HTTP or status == 404:
                    raise _Retryable(f"HTTP {status}: {_error_text(err.response)}") from None
                if 400 <= status < 500:
                    raise InvalidInput(f"the predictor rejected the request: {_error_text(err.response)}") from None
                raise _Retryable(f"HTTP {status}: {_error_text(err.response)}") from None
            except httpx.TransportError as err:
                raise _Retryable(f"{type(err).__name__}: {err or 'connection failed'}") from None
        import grpc

        try:
            return await client.infer(request)
        except grpc.RpcError as err:
            code = err.code().name if hasattr(err, "code") else "UNKNOWN"
            details = err.details() if hasattr(err, "details") else str(err)
            if code == "INVALID_ARGUMENT":
                raise InvalidInput(f"the predictor rejected the request: {details}") from None
            raise _Retryable(f"gRPC {code}: {details}") from None

    async def close(self) -> None:
        for client in (self._rest, self._grpc):
            if client is not None:
                await client.close()


class _Retryable(Exception):
    pass


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except Exception:  # not JSON
        return response.text[:200]
