"""The request-log agent's connection to the drift sidecar: one kept-alive HTTP/1.1 connection, requests written
as bytes and answers read by httptools (the C parser uvicorn serves with)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httptools


class Unanswered(ConnectionError):
    """The connection failed before every event was answered; ``answers`` holds those that were."""

    def __init__(self, message: str, answers: list[tuple[int, str]]):
        super().__init__(message)
        self.answers = answers


class _Answers:
    """httptools callbacks: each answer's status and ``Retry-After``, in order."""

    def __init__(self):
        self.parser = None
        self.results: list[tuple[int, str]] = []
        self.keep_alive = True
        self._retry_after = ""

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"retry-after":
            self._retry_after = value.decode("latin-1").strip()

    def on_message_complete(self) -> None:
        self.results.append((self.parser.get_status_code(), self._retry_after))
        self.keep_alive = self.parser.should_keep_alive()
        self._retry_after = ""


class Connection:
    """One kept-alive HTTP/1.1 connection to the sidecar, opened when first needed and again after a failure.

    Requests are written as bytes and answers read by httptools (the C parser uvicorn serves with). Once the
    connection has shown it stays open, a predictor call's request and response events leave in one write,
    pipelined, and their answers are read together. With ``http.client`` an event cost about 210 µs of CPU
    (its header checks and the email parser reading each answer, a write and a read per event); this way,
    about 63 µs."""

    def __init__(self, url: str, timeout_s: float):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"request logger url {url!r}: an http:// or https:// URL is needed")
        self._tls = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port or (443 if self._tls else 80)
        self._timeout = timeout_s
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._start = f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode("latin-1")
        self._sock: socket.socket | None = None
        self._proven = False  # an answer on this connection said it stays open: later events may be pipelined

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls:
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self._host)
        return sock

    def _request(self, payload: bytes, headers: dict[str, str]) -> bytes:
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return b"%s%sContent-Length: %d\r\n\r\n%s" % (self._start, lines.encode("latin-1"), len(payload), payload)

    def post(self, events: list[tuple[bytes, dict[str, str]]]) -> list[tuple[int, str]]:
        """Status and ``Retry-After`` of each event's POST, in order. Raises :class:`Unanswered` (with the answers
        received) when the connection fails before every event is answered."""
        answers: list[tuple[int, str]] = []
        while len(answers) < len(events):
            if self._sock is None:
                self._sock, self._proven = self._open(), False
            batch = events[len(answers):] if self._proven else events[len(answers):len(answers) + 1]
            reader = _Answers()
            reader.parser = httptools.HttpResponseParser(reader)
            try:
                self._sock.sendall(b"".join(self._request(payload, headers) for payload, headers in batch))
                while len(reader.results) < len(batch):
                    chunk = self._sock.recv(65536)
                    if not chunk:
                        break  # closed: what was answered counts, the rest goes again
                    reader.parser.feed_data(chunk)
            except (OSError, httptools.HttpParserError) as err:
                self.close()
                raise Unanswered(f"{type(err).__name__}: {err}", answers + reader.results) from err
            answers += reader.results
            if len(reader.results) < len(batch) or not reader.keep_alive:
                self.close()
                if len(reader.results) < len(batch) and not reader.results:
                    raise Unanswered("the sidecar closed the connection without an answer", answers)
            else:
                self._proven = True
        return answers

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
