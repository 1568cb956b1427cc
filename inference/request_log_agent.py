"""The request-log agent: the process that sends a transformer's logged predictor calls to the drift sidecar, as
KServe's agent container beside the predictor sends them in a cluster. The transformer's
:class:`~inference.request_logger.RequestLogger` starts it with one end of a Unix socket pair and hands it
each call's arrays (:mod:`inference.request_log_frames`); the encoding and HTTP of every event then take
neither the transformer's core nor its interpreter lock.

Each call becomes the CloudEvents KServe's logger sends (binary content mode, ``ce-type``
``org.kubeflow.serving.inference.request`` then ``.response``, one ``ce-id`` for both, the
``inferenceservicename`` / ``namespace`` / ``component`` / ``endpoint`` extensions, V2 JSON bodies), POSTed over
one kept-alive connection (:class:`~inference.request_log_http.Connection`: a call's events, and those of
calls queued meanwhile, in one write). A refused (429/502/503/504) or unreachable sidecar is retried with a
doubling backoff on a fresh connection (by default 10 retries over about 21 s: long enough for a sidecar
restarted after a crash to load its detector and take the event). Running totals go back to the transformer
on the same socket, at most every ``REPORT_EVERY_S``, and at the end. When the transformer closes its end
(or dies), the agent sends what it holds, without waiting between retries, reports, and exits.

Usage (by the transformer only): ``python -m inference.request_log_agent FD CONFIG_JSON``.
"""

from __future__ import annotations

import logging
import queue
import signal
import socket
import sys
import threading
import time
import uuid

import numpy as np
import orjson

from inference.request_log_frames import PREFIX, decode, events_per_call
from inference.request_log_http import Connection

log = logging.getLogger("clinops.request_log_agent")
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
RETRY_STATUS = {429, 502, 503, 504}
WIRE = {"f": "FP64", "i": "INT64", "u": "INT64", "b": "BOOL"}
MAX_CALLS_PER_WRITE = 16  # queued predictor calls whose events go out in one write (pipelined)
REPORT_EVERY_S = 0.05


def v2_tensors(tensors: dict[str, np.ndarray]) -> list[dict]:
    """V2 JSON tensors, their data as flat arrays for orjson (which writes NaN, a missing value, as ``null``)."""
    return [{"name": name, "shape": list(array.shape), "datatype": WIRE.get(array.dtype.kind, "FP64"),
             "data": np.ascontiguousarray(array).ravel()} for name, array in tensors.items()]


def encode(body: dict) -> bytes:
    """JSON of an event body; numpy arrays written by orjson itself, NaN and infinities as ``null``."""
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


class Agent:
    def __init__(self, sock: socket.socket, url: str, model_name: str, mode: str, extensions: dict[str, str],
                 retries: int, backoff_s: float, timeout_s: float):
        self.sock, self.model_name, self.mode, self.extensions = sock, model_name, mode, extensions
        self.retries, self.backoff_s = retries, backoff_s
        self._source = f"http://localhost/v2/models/{model_name}/infer"
        self._client = Connection(url, timeout_s)
        self.calls: queue.Queue = queue.Queue()  # bounded by the transformer, which counts what it hands over
        self.totals = {"sent": {"request": 0, "response": 0}, "dropped": {"gave_up": 0, "refused": 0, "unencodable": 0},
                       "done_calls": 0, "done_bytes": 0}
        self._closing = threading.Event()  # the transformer's end is closed: send what is held, then exit
        self._reported = b""
        self._report_due = 0.0

    def run(self) -> None:
        threading.Thread(target=self._read, name="frames", daemon=True).start()
        try:
            while True:
                try:
                    first = self.calls.get(timeout=max(0.0, self._report_due - time.monotonic())
                                           if self._report_due else None)
                except queue.Empty:
                    self._report()
                    continue
                if first is None:
                    break
                calls = [first]
                while len(calls) < MAX_CALLS_PER_WRITE:  # what else is queued goes in the same write
                    try:
                        call = self.calls.get_nowait()
                    except queue.Empty:
                        break
                    if call is None:
                        self.calls.put(None)
                        break
                    calls.append(call)
                self._deliver([event for call in calls for event in self._events_or_count(*call)])
                self.totals["done_calls"] += len(calls)
                self.totals["done_bytes"] += sum(len(data) for _, data in calls)
                self._report(soon=True)
        finally:
            self._client.close()
            self._report()

    def _read(self) -> None:
        """Frames from the transformer onto the queue; its end closed (or the transformer gone): the end mark."""
        reader = self.sock.makefile("rb", buffering=1 << 20)
        try:
            while True:
                prefix = reader.read(PREFIX.size)
                if len(prefix) < PREFIX.size:
                    break
                header_len, data_len = PREFIX.unpack(prefix)
                header, data = reader.read(header_len), reader.read(data_len)
                if len(header) < header_len or len(data) < data_len:
                    break
                self.calls.put((header, data))
        except OSError:
            pass
        finally:
            self._closing.set()
            self.calls.put(None)

    def _report(self, soon: bool = False) -> None:
        """The running totals to the transformer: now, or (``soon``) within ``REPORT_EVERY_S``."""
        now = time.monotonic()
        if soon and not self._report_due:
            self._report_due = now + REPORT_EVERY_S
        if soon and now < self._report_due:
            return
        self._report_due = 0.0
        line = orjson.dumps(self.totals) + b"\n"
        if line != self._reported:
            try:
                self.sock.sendall(line)
                self._reported = line
            except OSError:
                pass  # the transformer is gone: nobody to tell

    def _events_or_count(self, header: bytes, data: bytes) -> list[tuple[str, bytes, dict]]:
        """:meth:`_events`; a frame that cannot be read is counted ``unencodable`` and skipped."""
        try:
            return self._events(header, data)
        except (ValueError, TypeError) as err:
            self.totals["dropped"]["unencodable"] += events_per_call(self.mode)
            log.warning("a logged call could not be read (%s): its events are dropped", type(err).__name__)
            return []

    def _events(self, header: bytes, data: bytes) -> list[tuple[str, bytes, dict]]:
        """A predictor call's events as the mode has them: ``(kind, body, headers)`` each."""
        inputs, outputs = decode(header, data)
        event_id, out = uuid.uuid4().hex, []
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

    def _deliver(self, pending: list[tuple[str, bytes, dict]]) -> None:
        """Events ``(kind, body, headers)``, sent together; those refused for now (429/502/503/504) or left
        without an answer by a failed connection are sent again with a doubling backoff (the sidecar keeps an
        event once, by ``ce-id`` and type); each one is counted delivered, refused or given up."""
        delay, client = self.backoff_s, self._client
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
                    self.totals["sent"][kind] += 1
                elif status in RETRY_STATUS:
                    again.append((kind, payload, headers))
                    delay = max(delay, float(retry_after)) if retry_after.isdigit() else delay
                else:
                    self.totals["dropped"]["refused"] += 1
                    log.warning("drift sidecar refused a %s event: HTTP %d", kind, status)
            pending = again
            if not pending:
                return
            if attempt < self.retries and not self._closing.is_set():
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.totals["dropped"]["gave_up"] += len(pending)


def main(argv: list[str]) -> int:
    # the transformer decides when this process ends (it closes its end of the socket): a Ctrl-C or a TERM
    # meant for the transformer's process group must not take the calls still held here
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(argv) != 3:
        print(__doc__.rsplit("Usage", 1)[1].strip(), file=sys.stderr)
        return 2
    config = orjson.loads(argv[2])
    Agent(socket.socket(fileno=int(argv[1])), **config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
