"""The local stand-in for KServe's request logger: the transformer sends, for every call to its predictor,
the CloudEvents the KServe agent in front of that predictor would send (binary content mode, ``ce-type``
``org.kubeflow.serving.inference.request`` then ``.response``, one ``ce-id`` for both, the
``inferenceservicename`` / ``namespace`` / ``component`` / ``endpoint`` extensions, V2 JSON bodies), so
the drift sidecar cannot tell a laptop from a cluster.

Nothing on the request path waits for it: :meth:`RequestLogger.log` puts the call's arrays on a bounded
queue and returns; one background thread encodes and sends them over one kept-alive connection (a call's
two events in one write, :class:`_Connection`: the CPU this thread takes is taken from the request path),
retrying a refused (429/503) or unreachable sidecar with a doubling backoff on a fresh connection (by
default 10 retries over about 21 s: long enough for a sidecar restarted after a crash to load its detector
and take the event). When the queue is full the event is dropped and counted
(``clinops_request_log_dropped{reason="queue_full"}``): a slow or dead sidecar never slows or fails a
request, and the count says so (the aim is zero at normal load).

``mode`` is KServe's logger mode: ``all``, ``request`` or ``response``. Pneumonia's detector reads
responses only (the embedding), so its requests, images, are not sent at all (``response``).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

import httptools
import numpy as np
import orjson
from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
MODES = ("all", "request", "response")
RETRY_STATUS = {429, 502, 503, 504}
WIRE = {"f": "FP64", "i": "INT64", "u": "INT64", "b": "BOOL"}
MAX_CALLS_PER_WRITE = 16  # queued predictor calls whose events go out in one write (pipelined)

SENT = Counter("clinops_request_log_sent", "Logged events delivered to the drift sidecar.", ["model", "type"])
DROPPED = Counter("clinops_request_log_dropped", "Logged events not delivered, by reason (queue_full: the "
                  "sidecar could not keep up; gave_up: retries exhausted; refused: a 4xx answer).",
                  ["model", "reason"])
QUEUED = Gauge("clinops_request_log_queued", "Predictor calls waiting to be sent to the drift sidecar.", ["model"])


def v2_tensors(tensors: dict[str, np.ndarray]) -> list[dict]:
    """V2 JSON tensors, their data as flat arrays for :func:`encode` (which writes NaN, a missing value, as
    ``null``)."""
    out = []
    for name, array in tensors.items():
        array = np.asarray(array)
        out.append({"name": name, "shape": list(array.shape), "datatype": WIRE.get(array.dtype.kind, "FP64"),
                    "data": np.ascontiguousarray(array).ravel()})
    return out


def encode(body: dict) -> bytes:
    """JSON of an event body; numpy arrays written by orjson itself (a fifth of the time ``tolist`` and the
    standard library take), NaN and infinities as ``null``."""
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


class RequestLogger:
    def __init__(self, url: str, model_name: str, mode: str = "all", namespace: str = "local",
                 component: str = "predictor", queue_size: int = 10_000, queue_bytes: int = 64 * 1024 * 1024,
                 retries: int = 10, backoff_s: float = 0.05, timeout_s: float = 5.0):
        if mode not in MODES:
            raise ValueError(f"request logger mode {mode!r}: one of {', '.join(MODES)}")
        self.url, self.model_name, self.mode = url, model_name, mode
        self._source = f"http://localhost/v2/models/{model_name}/infer"
        self.extensions = {"ce-inferenceservicename": model_name, "ce-namespace": namespace,
                           "ce-component": component, "ce-endpoint": "default"}
        if any(c in value for value in self.extensions.values() for c in "\r\n"):  # they go into headers as they are
            raise ValueError("request logger: a model name, namespace or component holds a line break")
        self.retries, self.backoff_s, self.timeout_s = retries, backoff_s, timeout_s
        self._client = _Connection(url, timeout_s)  # a URL that is not HTTP is refused here, not in the thread
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.queue_bytes = queue_bytes
        self._bytes = 0  # of the arrays queued: the bound that matters for embeddings
        self._bytes_lock = threading.Lock()
        self._sent = {kind: SENT.labels(model_name, kind) for kind in ("request", "response")}
        self._queued = QUEUED.labels(model_name)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="request-logger", daemon=True)
        self._thread.start()

    def log(self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
        """Queue one predictor call (its input and output arrays); never blocks. Only what the mode sends
        is kept (a response-mode logger holds no image)."""
        inputs = inputs if self.mode != "response" else {}
        outputs = outputs if self.mode != "request" else {}
        size = sum(np.asarray(a).nbytes for a in (*inputs.values(), *outputs.values()))
        with self._bytes_lock:
            if self._bytes + size > self.queue_bytes:
                DROPPED.labels(self.model_name, "queue_full").inc()
                return
            self._bytes += size
        try:
            self.queue.put_nowait((uuid.uuid4().hex, size, inputs, outputs))
        except queue.Full:
            with self._bytes_lock:
                self._bytes -= size
            DROPPED.labels(self.model_name, "queue_full").inc()
        self._queued.set(self.queue.qsize())

    # -- the background thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        client = self._client
        try:
            while not (self._stop.is_set() and self.queue.empty()):
                try:
                    calls = [self.queue.get(timeout=0.2)]
                except queue.Empty:
                    continue
                while len(calls) < MAX_CALLS_PER_WRITE:  # what else is queued goes in the same write
                    try:
                        calls.append(self.queue.get_nowait())
                    except queue.Empty:
                        break
                self._deliver(client, [event for call in calls for event in self._events(*call)])
                with self._bytes_lock:
                    self._bytes -= sum(call[1] for call in calls)
                self._queued.set(self.queue.qsize())
        finally:
            client.close()

    def _events(self, event_id: str, _size: int, inputs: dict, outputs: dict) -> list[tuple[str, bytes, dict]]:
        """A predictor call's events as the mode has them: ``(kind, body, headers)`` each."""
        out = []
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for kind, ce_type in (("request", REQUEST_TYPE), ("response", RESPONSE_TYPE)):
            if self.mode not in ("all", kind):
                continue
            body = ({"id": event_id, "inputs": v2_tensors(inputs)} if kind == "request" else
                    {"model_name": self.model_name, "id": event_id, "outputs": v2_tensors(outputs)})
            out.append((kind, encode(body),
                        {"ce-specversion": "1.0", "ce-id": event_id, "ce-type": ce_type, "ce-source": self._source,
                         "ce-time": stamp, "content-type": "application/json", **self.extensions}))
        return out

    def _deliver(self, client: _Connection, pending: list[tuple[str, bytes, dict]]) -> None:
        """Events ``(kind, body, headers)``, sent together; those refused for now (429/502/503/504) or left
        without an answer by a failed connection are sent again with a doubling backoff (the sidecar keeps an
        event once, by ``ce-id`` and type); each one is counted delivered, refused or given up."""
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            answers: list[tuple[int, str]] = []
            try:
                answers = client.post([(payload, headers) for _, payload, headers in pending])
            except Exception as err:  # noqa: BLE001 - any transport failure is retried, then counted
                client.close()  # the next attempt opens a fresh connection
                answers = getattr(err, "answers", [])  # those answered before the connection failed
                if attempt == self.retries:
                    log.warning("drift sidecar unreachable (%s): %d event(s) dropped", type(err).__name__,
                                len(pending) - len(answers))
            again = pending[len(answers):]
            for (kind, payload, headers), (status, retry_after) in zip(pending[:len(answers)], answers, strict=True):
                if status == 200:
                    self._sent[kind].inc()
                elif status in RETRY_STATUS:
                    again.append((kind, payload, headers))
                    delay = max(delay, float(retry_after)) if retry_after.isdigit() else delay
                else:
                    DROPPED.labels(self.model_name, "refused").inc()
                    log.warning("drift sidecar refused a %s event: HTTP %d", kind, status)
            pending = again
            if not pending:
                return
            if attempt < self.retries and not self._stop.is_set():
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        DROPPED.labels(self.model_name, "gave_up").inc(len(pending))

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (up to ``timeout_s``), then stop the thread."""
        deadline = time.monotonic() + timeout_s
        while not self.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        self._thread.join(max(0.1, deadline - time.monotonic()))


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


class _Connection:
    """One kept-alive HTTP/1.1 connection to the sidecar, opened when first needed and again after a failure.

    Requests are written as bytes and answers read by httptools (the C parser uvicorn serves with). Once the
    connection has shown it stays open, a predictor call's request and response events leave in one write,
    pipelined, and their answers are read together. With ``http.client`` an event cost the transformer's
    process about 210 µs of CPU (its header checks and the email parser reading each answer, a write and a
    read per event): at half the heart-disease stack's capacity that was a third more CPU per request on the
    transformer's core, and its p99 rose 10–15 % (``make bench-drift`` (2))."""

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
