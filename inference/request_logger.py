"""The local stand-in for KServe's request logger, the transformer's side: for every call to its predictor, the
transformer hands the call's arrays to a request-log agent (:mod:`inference.request_log_agent`), a process of
its own as KServe's agent is a container of its own, which sends the CloudEvents the KServe agent in front of
that predictor would send, so the drift sidecar cannot tell a laptop from a cluster.

Nothing on the request path waits for it: :meth:`RequestLogger.log` writes the call's frame
(:mod:`inference.request_log_frames`) to a non-blocking Unix socket in one ``sendmsg`` and returns; what the
socket cannot take at once waits in order for a flusher thread. The calls handed over and not yet sent are
bounded (``queue_size`` calls, ``queue_bytes`` of arrays): beyond that a call's events are dropped and counted
(``clinops_request_log_dropped{reason="queue_full"}``), so a slow or dead sidecar never slows or fails a
request, and the count says so (the aim is zero at normal load). The agent's running totals come back on the
same socket and become this process's metrics (``clinops_request_log_sent``, ``..._dropped``,
``..._queued``). An agent that dies is started again; the calls it held are counted lost
(``reason="agent_lost"``), those not yet written to it go to the new one.

``mode`` is KServe's logger mode: ``all``, ``request`` or ``response``. Pneumonia's detector reads
responses only (the embedding), so its requests, images, are not sent at all (``response``).
"""

from __future__ import annotations

import collections
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import orjson
from prometheus_client import Counter, Gauge

from inference import request_log_frames
from inference.request_log_agent import REQUEST_TYPE, RESPONSE_TYPE
from inference.request_log_http import Connection

__all__ = ["MODES", "REQUEST_TYPE", "RESPONSE_TYPE", "RequestLogger"]
log = logging.getLogger(__name__)
MODES = ("all", "request", "response")
RESTART_BACKOFF_S = (0.5, 30.0)  # an agent that keeps dying is started again after 0.5 s, then up to 30 s
ROOT = Path(__file__).resolve().parents[1]

SENT = Counter("clinops_request_log_sent", "Logged events delivered to the drift sidecar.", ["model", "type"])
DROPPED = Counter("clinops_request_log_dropped", "Logged events not delivered, by reason (queue_full: the "
                  "sidecar could not keep up; gave_up: retries exhausted; refused: a 4xx answer; agent_lost: held "
                  "by a request-log agent that died; unencodable: arrays that cannot be framed).", ["model", "reason"])
QUEUED = Gauge("clinops_request_log_queued", "Predictor calls waiting to be sent to the drift sidecar.", ["model"])


class RequestLogger:
    def __init__(self, url: str, model_name: str, mode: str = "all", namespace: str = "local",
                 component: str = "predictor", queue_size: int = 10_000, queue_bytes: int = 64 * 1024 * 1024,
                 retries: int = 10, backoff_s: float = 0.05, timeout_s: float = 5.0):
        if mode not in MODES:
            raise ValueError(f"request logger mode {mode!r}: one of {', '.join(MODES)}")
        extensions = {"ce-inferenceservicename": model_name, "ce-namespace": namespace,
                      "ce-component": component, "ce-endpoint": "default"}
        if any(c in value for value in extensions.values() for c in "\r\n"):  # they go into headers as they are
            raise ValueError("request logger: a model name, namespace or component holds a line break")
        Connection(url, timeout_s)  # a URL that is not HTTP is refused here, not in the agent
        self.url, self.model_name, self.mode = url, model_name, mode
        self.queue_size, self.queue_bytes = queue_size, queue_bytes
        self._config = orjson.dumps({"url": url, "model_name": model_name, "mode": mode, "extensions": extensions,
                                     "retries": retries, "backoff_s": backoff_s, "timeout_s": timeout_s}).decode()
        self._per_call = request_log_frames.events_per_call(mode)
        self._sent = {kind: SENT.labels(model_name, kind) for kind in ("request", "response")}
        self._queued = QUEUED.labels(model_name)
        self._lock = threading.Condition()
        self._pending: collections.deque = collections.deque()  # [frame, bytes sent, array bytes] not yet taken
        self._handed = [0, 0]  # calls, array bytes written to (or waiting for) the current agent
        self._done = [0, 0]  # of those, what the agent reports sent or given up
        self._closing = False
        self._sock, self._agent = self._start_agent()
        threading.Thread(target=self._read_reports, name="request-log-reports", daemon=True).start()
        threading.Thread(target=self._flush, name="request-log-flusher", daemon=True).start()

    def _start_agent(self) -> tuple[socket.socket, subprocess.Popen]:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
        agent = subprocess.Popen([sys.executable, "-m", "inference.request_log_agent", str(theirs.fileno()),
                                  self._config], pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        theirs.close()  # the socket stays blocking for the reports; frames are written with MSG_DONTWAIT
        return mine, agent

    @property
    def agent_pid(self) -> int:
        return self._agent.pid

    def log(self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
        """Hand one predictor call (its input and output arrays) to the agent; never blocks. Only what the mode
        sends is handed over (a response-mode logger passes no image)."""
        inputs = inputs if self.mode != "response" else {}
        outputs = outputs if self.mode != "request" else {}
        try:
            buffers, length, size = request_log_frames.encode(inputs, outputs)
        except (TypeError, ValueError, BufferError) as err:  # e.g. an object array: the request goes on
            DROPPED.labels(self.model_name, "unencodable").inc(self._per_call)
            log.warning("request logger for %s cannot hand over a call: %s", self.model_name, type(err).__name__)
            return
        with self._lock:
            if (self._handed[1] - self._done[1] + size > self.queue_bytes
                    or self._handed[0] - self._done[0] >= self.queue_size or self._closing):
                DROPPED.labels(self.model_name, "queue_full").inc(self._per_call)
                return
            self._handed[0] += 1
            self._handed[1] += size
            sent = 0
            if not self._pending:
                try:
                    sent = self._sock.sendmsg(buffers, (), socket.MSG_DONTWAIT)
                except OSError:  # full (BlockingIOError), or the agent is gone: the flusher or the next agent
                    sent = 0
            if sent < length:
                self._pending.append([b"".join(buffers), sent, size])
                self._lock.notify_all()

    # -- threads ---------------------------------------------------------------------------------------------
    def _flush(self) -> None:
        """Writes what the socket could not take at once, in order, as it takes it."""
        while True:
            with self._lock:
                while not self._pending and not (self._closing and self._sock is None):
                    self._lock.wait()
                if not self._pending:
                    return
                sock = self._sock
                frame = self._pending[0]
                try:
                    frame[1] += sock.send(memoryview(frame[0])[frame[1]:], socket.MSG_DONTWAIT)
                except BlockingIOError:
                    pass
                except OSError:
                    self._lock.wait(0.05)  # the agent is gone: the report reader starts another
                    continue
                if frame[1] == len(frame[0]):
                    self._pending.popleft()
                    self._lock.notify_all()
                    continue
            try:
                select.select([], [sock], [], 0.05)
            except (OSError, ValueError):  # closed meanwhile, for a new agent
                pass

    def _read_reports(self) -> None:
        """The agent's running totals into this process's metrics; an agent that dies is started again."""
        backoff = RESTART_BACKOFF_S[0]
        while True:
            started, last = time.monotonic(), {"sent": {}, "dropped": {}, "done_calls": 0, "done_bytes": 0}
            reader = self._sock.makefile("rb")
            try:
                for line in reader:
                    last = self._apply(orjson.loads(line), last)
            except (OSError, ValueError):
                pass
            status = self._agent.wait()
            fresh = None
            if not self._closing:
                log.error("request-log agent for %s exited (status %s); starting another", self.model_name, status)
                backoff = RESTART_BACKOFF_S[0] if time.monotonic() - started > 60 else min(backoff * 2,
                                                                                           RESTART_BACKOFF_S[1])
                time.sleep(backoff)
                fresh = self._start_agent()  # outside the lock: log() never waits for a process to start
            with self._lock:
                if not self._closing:
                    self._restart(*fresh)
                    continue
                self._count_lost("gave_up")
                self._sock.close()
                self._sock = None
                self._lock.notify_all()
            if fresh is not None:  # closed while it started
                fresh[0].close()
                fresh[1].wait()
            return

    def _apply(self, totals: dict, last: dict) -> dict:
        for kind, n in totals["sent"].items():
            self._sent[kind].inc(n - last["sent"].get(kind, 0))
        for reason, n in totals["dropped"].items():
            if n > last["dropped"].get(reason, 0):
                DROPPED.labels(self.model_name, reason).inc(n - last["dropped"].get(reason, 0))
        with self._lock:
            self._done[0] += totals["done_calls"] - last["done_calls"]
            self._done[1] += totals["done_bytes"] - last["done_bytes"]
            self._queued.set(self._handed[0] - self._done[0])
            self._lock.notify_all()
        return totals

    def _count_lost(self, reason: str) -> None:
        """(lock held) The calls handed to the current agent that it did not report done, as dropped events."""
        lost = self._handed[0] - self._done[0]
        if lost:
            DROPPED.labels(self.model_name, reason).inc(lost * self._per_call)
        self._handed, self._done = [0, 0], [0, 0]
        self._queued.set(0)

    def _restart(self, sock: socket.socket, agent: subprocess.Popen) -> None:
        """(lock held) The new agent's turn; the frames not yet written in full go to it, the rest are counted
        lost."""
        if self._pending and self._pending[0][1]:  # its head went to the dead agent in part: lost with it
            self._pending.popleft()
        kept = [size for _, _, size in self._pending]
        self._handed[0] -= len(kept)
        self._handed[1] -= sum(kept)
        self._count_lost("agent_lost")
        self._handed = [len(kept), sum(kept)]
        self._sock.close()
        self._sock, self._agent = sock, agent
        self._lock.notify_all()

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is handed over (up to ``timeout_s``), then stop the agent; what it could not send in that
        time is counted given up."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._lock.notify_all()
            while self._pending and time.monotonic() < deadline:
                self._lock.wait(0.05)
            self._pending.clear()
            sock, agent = self._sock, self._agent
            try:
                sock.shutdown(socket.SHUT_WR)  # the agent reads to the end, sends what it holds, reports, exits
            except OSError:
                pass
        try:
            agent.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            agent.kill()
        with self._lock:
            while self._sock is not None and time.monotonic() < deadline + 1.0:
                self._lock.wait(0.05)
