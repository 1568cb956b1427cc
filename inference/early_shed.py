"""A bound on REST inference requests in flight, enforced before the app parses them (``--max_in_flight_requests``).

Under a flood the work bounds of :mod:`inference.admission` refuse a request only after the whole app has parsed
it: routing, the JSON body, the V2 decode, the input checks, about a millisecond of one core each. At ten times
capacity that is more than the core has, so requests wait unread in the socket and the accepted ones are
answered seconds late. Here a request is judged from its request line alone:

* :class:`RequestGate` (ASGI middleware, outermost) counts ``POST …/infer`` requests inside the app in a
  :class:`Gate`;
* :class:`ShedEarlyProtocol` (:mod:`inference.shed_protocol`, uvicorn's httptools protocol) answers such a
  request at once with a prepared 503 and ``Retry-After`` when the gate is at its bound, discarding its body as it
  arrives: no ASGI scope, task or JSON parse. It keeps the connection alive as the client asked. A pipelined
  request (one sent before the answer to the previous one) goes the normal way, to keep answers in order: the
  gate sheds it there instead.

gRPC inference calls count in the same gate: :func:`grpc_guard` wraps KServe's ``ModelInfer`` (the patch is
:mod:`inference.kserve_patches`'s ``grpc_request_gate``) and answers a call past the bound with ``UNAVAILABLE``
before the request is checked or decoded: no exception, so no traceback logged per refusal.

Each refusal is counted in ``clinops_shed_total{reason="requests_in_flight"}`` and ``clinops_requests_total``.
Health, readiness, metadata and metrics are never refused.
"""

from __future__ import annotations

import functools

import orjson

from inference import metrics, shed_protocol
from inference.admission import RETRY_AFTER_S, SHED, Overloaded
from inference.envelope import model_from_path, reply

REASON = "requests_in_flight"
current: Gate | None = None  # this process's gate, once :func:`apply` has set it (REST and gRPC share it)


class Gate:
    """REST inference requests in flight in this process, and their bound (``limit`` 0: no bound)."""

    def __init__(self, limit: int, models: frozenset[str] = frozenset()):
        if limit < 0:
            raise ValueError("max_in_flight_requests must be 0 (no bound) or positive")
        self.limit = limit
        self.models = models  # metric labels only for served names
        self.in_flight = 0
        self.payload = {"error": f"{limit} inference requests are in flight, the bound (max_in_flight_requests): "
                                 f"retry after {RETRY_AFTER_S} s"}
        self.message = orjson.dumps(self.payload)
        self.status_line = b"HTTP/1.1 503 Service Unavailable\r\n"
        self.retry_after = RETRY_AFTER_S
        self._counters: dict[str, tuple] = {}

    def full(self) -> bool:
        return bool(self.limit) and self.in_flight >= self.limit

    def refuses(self, method: bytes, path: bytes, tasks: int) -> bool:
        """:class:`inference.shed_protocol.Judge`: a ``POST …/infer`` while full."""
        return self.full() and method == b"POST" and path.endswith(b"/infer")

    def count_shed(self, path: str) -> None:
        counters = self._counters.get(path)
        if counters is None:
            model = model_from_path(path)
            model = model if model in self.models else "unknown"
            counters = (SHED.labels(model, REASON), metrics.REQUESTS.labels(model, "503"))
            if len(self._counters) < 64:  # paths are the client's: remember only a few
                self._counters[path] = counters
        for counter in counters:
            counter.inc()


class RequestGate:
    """ASGI middleware: counts ``POST …/infer`` requests inside the app in its :class:`Gate`, and refuses one
    past the bound that reached the app anyway (a pipelined request)."""

    def __init__(self, app, gate: Gate):
        self.app = app
        self.gate = gate

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/infer"):
            return await self.app(scope, receive, send)
        gate = self.gate
        if gate.full():
            gate.count_shed(scope["path"])
            return await reply(send, 503, gate.payload, headers=((b"retry-after", str(RETRY_AFTER_S).encode()),))
        gate.in_flight += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            gate.in_flight -= 1


class ShedEarlyProtocol(shed_protocol.ShedEarlyProtocol):
    """uvicorn's httptools protocol, answering an inference request with 503 from its request line while the
    :class:`Gate` of this process is full (:func:`apply` sets it as the judge)."""

    judge: Gate | None = None


def apply(gate: Gate) -> None:
    """Serve REST with :class:`ShedEarlyProtocol` judging by ``gate`` (KServe builds uvicorn's config with the
    default protocol)."""
    from kserve.protocol.rest import server as rest_server

    global current
    current = ShedEarlyProtocol.judge = gate
    rest_init = rest_server.RESTServer.__init__
    if getattr(rest_init, "_clinops_shed_early", False):
        return

    @functools.wraps(rest_init)
    def with_protocol(self, *args, **kwargs):
        rest_init(self, *args, **kwargs)
        self.config.http = ShedEarlyProtocol

    with_protocol._clinops_shed_early = True
    rest_server.RESTServer.__init__ = with_protocol


def grpc_guard(model_infer):
    """KServe's ``InferenceServicer.ModelInfer``, counted in this process's gate (:data:`current`): past the
    bound a call is answered ``UNAVAILABLE`` at once, before the request is checked or decoded. A work bound's
    refusal inside (:class:`inference.admission.Overloaded`) gets the same answer without going through
    KServe's interceptor, which logs a traceback for every exception it maps: a flood paid for one each."""
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    def unavailable(context, details: str):
        context.set_code(grpc.StatusCode.UNAVAILABLE)
        context.set_details(details)
        return pb.ModelInferResponse()

    async def admitted(self, request, context):
        try:
            return await model_infer(self, request, context)
        except Overloaded as err:  # a work bound's refusal, counted where it was raised: answered the same way
            return unavailable(context, err.reason)

    @functools.wraps(model_infer)
    async def guarded(self, request, context):
        gate = current
        if gate is None or not gate.limit:
            return await admitted(self, request, context)
        if gate.full():
            gate.count_shed(f"/v2/models/{request.model_name}/infer")
            return unavailable(context, gate.payload["error"])
        gate.in_flight += 1
        try:
            return await admitted(self, request, context)
        finally:
            gate.in_flight -= 1

    return guarded
