"""The request bound is judged from the request line: past it a real uvicorn server (the protocol clinops serves
REST with) answers 503 + Retry-After without the app, keeps the connection usable, and counts the refusal."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import orjson
import pytest
import uvicorn

from inference import admission, early_shed, metrics

BODY = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}]}'


class _App:
    """/v2/models/m/infer answers once released; anything else at once. Records what reached it."""

    def __init__(self):
        self.release: asyncio.Event | None = None
        self.reached: list[str] = []
        self.asgi: list[str] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                self.release = asyncio.Event()
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.reached.append(f"{scope['method']} {scope['path']}")
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"].endswith("/infer"):
            await self.release.wait()
        answer = orjson.dumps({"bytes": len(body)})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


@pytest.fixture
def server():
    app = _App()
    gate = early_shed.Gate(2, models=frozenset({"m"}))
    early_shed.ShedEarlyProtocol.judge = gate
    gated = early_shed.RequestGate(app, gate)

    async def asgi(scope, receive, send):  # what reached ASGI at all, before the gate
        if scope["type"] == "http":
            app.asgi.append(f"{scope['method']} {scope['path']}")
        await gated(scope, receive, send)

    config = uvicorn.Config(asgi, host="127.0.0.1", port=0, http=early_shed.ShedEarlyProtocol,
                            log_level="warning", loop="asyncio", timeout_keep_alive=30)
    userver = uvicorn.Server(config)
    thread = threading.Thread(target=userver.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not (userver.started and userver.servers):
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = userver.servers[0].sockets[0].getsockname()[1]
    try:
        yield app, gate, port, userver
    finally:
        early_shed.ShedEarlyProtocol.judge = None
        userver.should_exit = True
        thread.join(20)


def _request(path: str, body: bytes = BODY, version: str = "1.1", extra: str = "") -> bytes:
    method = "POST" if body else "GET"
    return (f"{method} {path} HTTP/{version}\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


class _Conn:
    """A raw HTTP/1.1 connection reading answers one at a time (pipelined ones stay buffered)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"connection closed before an answer: {self.buffer!r}"
        self.buffer += chunk

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), headers, body

    def closed_by_server(self) -> bool:
        return not self.buffer and self.sock.recv(1) == b""

    def close(self) -> None:
        self.sock.close()


def _wait(predicate, what: str) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _counted() -> tuple[float, float]:
    return (admission.SHED.labels("m", early_shed.REASON)._value.get(),
            metrics.REQUESTS.labels("m", "503")._value.get())


def test_past_the_bound_an_inference_request_is_answered_503_before_the_app_and_the_connection_stays_usable(server):
    app, gate, port, userver = server
    held = [_Conn(port), _Conn(port)]
    for conn in held:
        conn.send(_request("/v2/models/m/infer"))
    _wait(lambda: gate.in_flight == 2, "the two held requests did not reach the app")
    shed_before, requests_before = _counted()

    conn = _Conn(port)
    big = b'{"inputs": [' + b" " * 300_000 + b"]}"  # a body the server discards unparsed, arriving in pieces
    conn.send(_request("/v2/models/m/versions/1/infer", body=big))
    status, headers, body = conn.answer()
    assert status == 503
    assert headers["retry-after"] == "1"
    assert headers["content-type"] == "application/json"
    assert "connection" not in headers  # kept alive, as HTTP/1.1 asks
    assert orjson.loads(body) == {"error": "2 inference requests are in flight, the bound (max_in_flight_requests): "
                                           "retry after 1 s"}
    # the same connection: health, metadata and the like are never refused, and the app saw none of the refused
    conn.send(_request("/v2/health/live", body=b""))
    status, _, body = conn.answer()
    assert (status, orjson.loads(body)) == (200, {"bytes": 0})
    assert app.reached.count("POST /v2/models/m/infer") == 2
    assert app.asgi == ["POST /v2/models/m/infer"] * 2 + ["GET /v2/health/live"]  # refused before ASGI
    # two requests sent back to back on one connection: both refused, answered in order
    conn.send(_request("/v2/models/m/infer") + _request("/v2/models/m/infer?x=1"))
    assert [conn.answer()[0], conn.answer()[0]] == [503, 503]
    # HTTP/1.0 without keep-alive: refused, then closed
    old = _Conn(port)
    old.send(_request("/v2/models/m/infer", version="1.0"))
    status, headers, _ = old.answer()
    assert (status, headers.get("connection")) == (503, "close")
    assert old.closed_by_server()

    shed_after, requests_after = _counted()
    assert (shed_after - shed_before, requests_after - requests_before) == (4, 4)
    assert gate.in_flight == 2

    # the held requests still finish normally once released
    asyncio.run_coroutine_threadsafe(_set(app.release), _loop_of(userver)).result(10)
    for held_conn in held:
        status, _, body = held_conn.answer()
        assert (status, orjson.loads(body)) == (200, {"bytes": len(BODY)})
    _wait(lambda: gate.in_flight == 0, "the gate did not count the finished requests out")
    conn.send(_request("/v2/models/m/infer"))  # under the bound again: admitted on the kept-alive connection
    status, _, body = conn.answer()
    assert (status, orjson.loads(body)) == (200, {"bytes": len(BODY)})
    for c in (*held, conn, old):
        c.close()


async def _set(event: asyncio.Event) -> None:
    event.set()


def _loop_of(userver: uvicorn.Server) -> asyncio.AbstractEventLoop:
    return userver.servers[0].get_loop()


def test_a_pipelined_request_past_the_bound_is_refused_by_the_gate_in_order():
    async def scenario():
        release = asyncio.Event()
        sent: list[dict] = []

        async def app(scope, receive, send):
            await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        async def receive():
            return {"type": "http.request", "body": BODY, "more_body": False}

        async def send(message):
            sent.append(message)

        gate = early_shed.Gate(1, models=frozenset({"m"}))
        wrapped = early_shed.RequestGate(app, gate)
        scope = {"type": "http", "method": "POST", "path": "/v2/models/m/infer", "headers": []}
        first = asyncio.create_task(wrapped(scope, receive, send))
        await asyncio.sleep(0)
        assert gate.in_flight == 1
        await wrapped(scope, receive, send)
        assert sent[0]["status"] == 503 and (b"retry-after", b"1") in sent[0]["headers"]
        assert orjson.loads(sent[1]["body"]) == gate.payload
        release.set()
        await wrapped({**scope, "method": "GET", "path": "/v2/models/m"}, receive, send)  # not counted
        await first
        assert gate.in_flight == 0
        assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [503, 200, 200]

    asyncio.run(scenario())


def test_the_bound_must_not_be_negative():
    with pytest.raises(ValueError, match="max_in_flight_requests"):
        early_shed.Gate(-1)


def test_a_grpc_inference_call_past_the_bound_is_answered_unavailable_before_the_servicer(monkeypatch):
    """A real grpc.aio server whose ModelInfer is guarded as the patch guards KServe's: one call holds the
    bound of 1, the next is answered UNAVAILABLE without reaching the servicer, and counted."""
    import grpc
    from grpc import aio
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    reached: list[str] = []

    class Servicer(pb_grpc.GRPCInferenceServiceServicer):
        release: asyncio.Event

        async def ModelInfer(self, request, context):  # noqa: N802 - the protocol's name
            reached.append(request.id)
            await self.release.wait()
            return pb.ModelInferResponse(model_name=request.model_name, id=request.id)

    Servicer.ModelInfer = early_shed.grpc_guard(Servicer.ModelInfer)
    gate = early_shed.Gate(1, models=frozenset({"m"}))
    monkeypatch.setattr(early_shed, "current", gate)
    shed = admission.SHED.labels("m", early_shed.REASON)
    answered_503 = metrics.REQUESTS.labels("m", "503")
    shed_before, answered_before = shed._value.get(), answered_503._value.get()

    async def scenario():
        Servicer.release = asyncio.Event()
        server = aio.server()
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                first = asyncio.ensure_future(stub.ModelInfer(pb.ModelInferRequest(model_name="m", id="held")))
                while gate.in_flight < 1:
                    await asyncio.sleep(0.01)
                with pytest.raises(grpc.RpcError) as refused:
                    await stub.ModelInfer(pb.ModelInferRequest(model_name="m", id="refused"))
                Servicer.release.set()
                assert (await first).id == "held"
                assert (await stub.ModelInfer(pb.ModelInferRequest(model_name="m", id="after"))).id == "after"
                return refused.value
        finally:
            await server.stop(0)

    refused = asyncio.run(scenario())
    assert refused.code() == grpc.StatusCode.UNAVAILABLE
    assert refused.details() == "1 inference requests are in flight, the bound (max_in_flight_requests): retry after 1 s"
    assert reached == ["held", "after"]
    assert gate.in_flight == 0
    assert shed._value.get() - shed_before == 1 and answered_503._value.get() - answered_before == 1


def test_a_work_bound_refusal_over_grpc_is_answered_unavailable_without_an_exception(monkeypatch):
    """KServe's interceptor logs a traceback for each exception it maps: the guard answers Overloaded itself."""
    import grpc

    class Context:
        code = details = None

        def set_code(self, code):
            self.code = code

        def set_details(self, details):
            self.details = details

    class Request:
        model_name = "m"

    async def refusing(self, request, context):
        raise admission.Overloaded("m", "64 units of work in flight, the bound is 64: retry after 1 s")

    guarded = early_shed.grpc_guard(refusing)
    for gate in (None, early_shed.Gate(0), early_shed.Gate(8)):  # with and without a request bound
        monkeypatch.setattr(early_shed, "current", gate)
        context = Context()
        asyncio.run(guarded(None, Request(), context))  # returns: nothing raised for KServe to log
        assert context.code == grpc.StatusCode.UNAVAILABLE
        assert context.details == ("Model with name m is not ready. 64 units of work in flight, the bound is 64: "
                                   "retry after 1 s")  # the words KServe's interceptor gave, from err.reason
        assert gate is None or gate.in_flight == 0
