"""uvicorn's httptools protocol, answering a request from its request line alone when a :class:`Judge` says the
server is full: a prepared status, ``Retry-After`` and JSON message, the body thrown away as it arrives, no ASGI
scope, task or parse. The connection stays alive as the client asked.

A refusal costs a header parse and one write (tens of microseconds), where one that goes through the app costs
the whole stack. Under a flood of ten times what a server can do, that is the difference between answering the
excess at once and leaving every request, accepted ones too, waiting unread in the socket.

Only uvicorn is imported here: the serving runtimes (:mod:`inference.early_shed`) and the drift sidecar, whose
environment has no KServe, share it. A pipelined request (sent before the previous answer) goes the normal way,
to keep answers in order.
"""

from __future__ import annotations

from typing import Protocol

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class Judge(Protocol):
    status_line: bytes  # b"HTTP/1.1 503 Service Unavailable\r\n"
    retry_after: int
    message: bytes  # the JSON body of a refusal

    def refuses(self, method: bytes, path: bytes, tasks: int) -> bool:
        """True to refuse this request; ``tasks``: requests of this process inside the app now."""

    def count_shed(self, path: str) -> None:
        """Count one refusal (metrics)."""


class ShedEarlyProtocol(HttpToolsProtocol):
    """Set ``judge`` on a subclass (or this class) to refuse by it; ``None`` serves every request."""

    judge: Judge | None = None

    def on_message_begin(self) -> None:
        self._shedding = False
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        judge = self.judge
        if (judge is not None and not self.expect_100_continue
                and (self.cycle is None or self.cycle.response_complete)
                and judge.refuses(self.parser.get_method(), self.url.split(b"?", 1)[0], len(self.server_state.tasks))):
            self._shedding = True
            self._keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._shedding:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._shedding:
            return super().on_message_complete()
        self._shedding = False
        judge = self.judge
        judge.count_shed(self.url.split(b"?", 1)[0].decode("ascii", "replace"))
        head = [judge.status_line]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/json\r\ncontent-length: ", str(len(judge.message)).encode(),
                 b"\r\nretry-after: ", str(judge.retry_after).encode(), b"\r\n"]
        if not self._keep_alive:
            head.append(b"connection: close\r\n")
        head += [b"\r\n", judge.message]
        self.transport.write(b"".join(head))
        self.server_state.total_requests += 1
        if not self._keep_alive:
            self.transport.close()
        elif self.timeout_keep_alive_task is None and not self.transport.is_closing():
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
