"""The local stand-in for KServe's request logger: the transformer sends, for every call to its predictor,
the CloudEvents the KServe agent in front of that predictor would send (binary content mode, ``ce-type``
``org.kubeflow.serving.inference.request`` then ``.response``, one ``ce-id`` for both, the
``inferenceservicename`` / ``namespace`` / ``component`` / ``endpoint`` extensions, V2 JSON bodies), so
the drift sidecar cannot tell a laptop from a cluster.

Nothing on the request path waits for it: :meth:`RequestLogger.log` puts the call's arrays on a bounded
queue and returns; one background thread encodes and sends them over one kept-alive connection
(the standard library's ``http.client``: it costs the transformer's process about a quarter of the CPU per
event that httpx does, and that CPU is taken from the request path), retrying a refused (429/503) or
unreachable sidecar with a doubling backoff on a fresh connection (by default 10 retries over about 21 s:
long enough for a sidecar restarted after a crash to load its detector and take the event). When the
queue is full the event is dropped and counted (``clinops_request_log_dropped{reason="queue_full"}``): a
slow or dead sidecar never slows or fails a request, and the count says so (the aim is zero at normal load).

``mode`` is KServe's logger mode: ``all``, ``request`` or ``response``. Pneumonia's detector reads
responses only (the embedding), so its requests, images, are not sent at all (``response``).
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import queue
import threading
import time
import uuid
from urllib.parse import urlsplit

import numpy as np
from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
MODES = ("all", "request", "response")
RETRY_STATUS = {429, 502, 503, 504}
WIRE = {"f": "FP64", "i": "INT64", "u": "INT64", "b": "BOOL"}

SENT = Counter("clinops_request_log_sent", "Logged events delivered to the drift sidecar.", ["model", "type"])
DROPPED = Counter("clinops_request_log_dropped", "Logged events not delivered, by reason (queue_full: the "
                  "sidecar could not keep up; gave_up: retries exhausted; refused: a 4xx answer).",
                  ["model", "reason"])
QUEUED = Gauge("clinops_request_log_queued", "Predictor calls waiting to be sent to the drift sidecar.", ["model"])


def v2_tensors(tensors: dict[str, np.ndarray]) -> list[dict]:
    """V2 JSON tensors; NaN (a missing value) becomes ``null``."""
    out = []
    for name, array in tensors.items():
        array = np.asarray(array)
        data = array.ravel().tolist()
        if array.dtype.kind == "f" and np.isnan(array).any():
            data = [None if isinstance(v, float) and math.isnan(v) else v for v in data]
        out.append({"name": name, "shape": list(array.shape), "datatype": WIRE.get(array.dtype.kind, "FP64"),
                    "data": data})
    return out


class RequestLogger:
    def __init__(self, url: str, model_name: str, mode: str = "all", namespace: str = "local",
                 component: str = "predictor", queue_size: int = 10_000, queue_bytes: int = 64 * 1024 * 1024,
                 retries: int = 10, backoff_s: float = 0.05, timeout_s: float = 5.0):
        if mode not in MODES:
            raise ValueError(f"request logger mode {mode!r}: one of {', '.join(MODES)}")
        self.url, self.model_name, self.mode = url, model_name, mode
        self.extensions = {"ce-inferenceservicename": model_name, "ce-namespace": namespace,
                           "ce-component": component, "ce-endpoint": "default"}
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
                    event_id, size, inputs, outputs = self.queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                if self.mode in ("all", "request"):
                    self._send(client, event_id, REQUEST_TYPE, "request", {"id": event_id, "inputs": v2_tensors(inputs)})
                if self.mode in ("all", "response"):
                    self._send(client, event_id, RESPONSE_TYPE, "response",
                               {"model_name": self.model_name, "id": event_id, "outputs": v2_tensors(outputs)})
                with self._bytes_lock:
                    self._bytes -= size
                self._queued.set(self.queue.qsize())
        finally:
            client.close()

    def _send(self, client: _Connection, event_id: str, ce_type: str, kind: str, body: dict) -> None:
        headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-type": ce_type,
                   "ce-source": f"http://localhost/v2/models/{self.model_name}/infer",
                   "ce-time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "content-type": "application/json", **self.extensions}
        payload = json.dumps(body, separators=(",", ":")).encode()
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                status, retry_after = client.post(payload, headers)
                if status == 200:
                    self._sent[kind].inc()
                    return
                if status not in RETRY_STATUS:
                    DROPPED.labels(self.model_name, "refused").inc()
                    log.warning("drift sidecar refused a %s event: HTTP %d", kind, status)
                    return
                delay = max(delay, float(retry_after)) if retry_after.isdigit() else delay
            except Exception as err:  # noqa: BLE001 - any transport failure is retried, then counted
                client.close()  # the next attempt opens a fresh connection
                if attempt == self.retries:
                    log.warning("drift sidecar unreachable (%s): %s event dropped", type(err).__name__, kind)
            if attempt < self.retries and not self._stop.is_set():
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        DROPPED.labels(self.model_name, "gave_up").inc()

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (up to ``timeout_s``), then stop the thread."""
        deadline = time.monotonic() + timeout_s
        while not self.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        self._thread.join(max(0.1, deadline - time.monotonic()))


class _Connection:
    """One kept-alive HTTP/1.1 connection to the sidecar, opened when first needed and again after a failure."""

    def __init__(self, url: str, timeout_s: float):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"request logger url {url!r}: an http:// or https:// URL is needed")
        self._factory = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._host, self._port, self._timeout = parts.hostname, parts.port, timeout_s
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._conn: http.client.HTTPConnection | None = None

    def post(self, payload: bytes, headers: dict[str, str]) -> tuple[int, str]:
        """Status and ``Retry-After`` of one POST; the answer is read whole so that the connection is reused."""
        if self._conn is None:
            self._conn = self._factory(self._host, self._port, timeout=self._timeout)
        self._conn.request("POST", self._path, body=payload, headers=headers)
        response = self._conn.getresponse()
        response.read()
        if response.will_close:
            self.close()
        return response.status, response.headers.get("retry-after", "")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
