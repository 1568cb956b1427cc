"""The transformer's request logger against a small local HTTP server: what it sends, its retries, and that a
slow, refusing or dead sidecar costs the request path nothing and every lost event is counted."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from inference.request_logger import REQUEST_TYPE, RESPONSE_TYPE, RequestLogger

pytestmark = pytest.mark.unit


class Sidecar:
    """Records every POST; answers with the scripted statuses in turn, then 200."""

    def __init__(self, statuses=(), keep_alive=False, hang_up_on=()):
        """``keep_alive``: answer in HTTP/1.1 and keep connections open; ``hang_up_on``: the numbers (from 1)
        of the POSTs to close the connection on without an answer (a stale kept-alive connection)."""
        self.received: list[tuple[dict, dict]] = []
        self.statuses = list(statuses)
        self.connections: set[tuple] = set()  # the client (address, port) of every POST
        self.posts = 0
        hang_up_on = set(hang_up_on)
        sidecar = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                sidecar.posts += 1
                sidecar.connections.add(self.client_address)
                if sidecar.posts in hang_up_on:
                    self.close_connection = True
                    return
                sidecar.received.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                status = sidecar.statuses.pop(0) if sidecar.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sidecar_factory():
    started = []

    def start(statuses=(), **options):
        started.append(Sidecar(statuses, **options))
        return started[-1]

    yield start
    for sidecar in started:
        sidecar.close()


def model() -> str:
    return f"m-{uuid.uuid4().hex[:8]}"  # the counters are process-wide: one label per test


def count(name, model_name, **labels):
    return REGISTRY.get_sample_value(f"{name}_total", {"model": model_name, **labels}) or 0.0


def wait_for(condition, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_request_and_response_share_an_id_with_types_extensions_and_v2_bodies(sidecar_factory):
    sidecar, name = sidecar_factory(), model()
    logger = RequestLogger(sidecar.url, name, namespace="clinical")
    logger.log({"features": np.array([[63.0, np.nan], [41.0, 1.0]])}, {"predict_proba": np.array([[0.2, 0.8]] * 2)})
    logger.close()
    assert len(sidecar.received) == 2
    (req_headers, req_body), (resp_headers, resp_body) = sidecar.received
    assert req_headers["ce-id"] == resp_headers["ce-id"] == req_body["id"] == resp_body["id"]
    assert (req_headers["ce-type"], resp_headers["ce-type"]) == (REQUEST_TYPE, RESPONSE_TYPE)
    for headers in (req_headers, resp_headers):
        assert headers["ce-specversion"] == "1.0" and headers["content-type"] == "application/json"
        assert (headers["ce-inferenceservicename"], headers["ce-namespace"], headers["ce-component"],
                headers["ce-endpoint"]) == (name, "clinical", "predictor", "default")
    assert req_body["inputs"] == [{"name": "features", "shape": [2, 2], "datatype": "FP64",
                                   "data": [63.0, None, 41.0, 1.0]}]
    assert resp_body["outputs"][0]["name"] == "predict_proba" and resp_body["outputs"][0]["data"] == [0.2, 0.8] * 2
    assert count("clinops_request_log_sent", name, type="request") == 1
    assert count("clinops_request_log_sent", name, type="response") == 1


def test_the_sidecar_accepts_what_the_logger_sends(sidecar_factory, tmp_path, heart_bundle):
    from drift_fakes import FakeDetector

    from inference.drift.service import DriftService
    from inference.drift.settings import DriftSettings

    sidecar, name = sidecar_factory(), model()
    logger = RequestLogger(sidecar.url, name, mode="request")
    logger.log({"x": np.array([[1.0, np.nan]])}, {})
    logger.close()
    service = DriftService(DriftSettings(log_dir=str(tmp_path / "drift"), window_size=10), heart_bundle,
                           FakeDetector())
    headers, body = sidecar.received[0]
    answer = service.accept(headers, json.dumps(body).encode())
    assert (answer.status, answer.body["status"], answer.body["seq"]) == (200, "accepted", 1)
    assert np.isnan(service.windower.current[0].inputs[0, 1])
    service.close()


def test_response_mode_sends_only_responses_and_holds_no_inputs(sidecar_factory):
    sidecar, name = sidecar_factory(), model()
    image = np.zeros((1, 1, 256, 256), dtype=np.float32)  # 256 KiB that must not be queued
    embedding = np.ones((1, 16), dtype=np.float32)
    logger = RequestLogger(sidecar.url, name, mode="response", queue_bytes=image.nbytes // 2)
    logger.log({"image": image}, {"embedding": embedding})
    logger.close()
    assert count("clinops_request_log_dropped", name, reason="queue_full") == 0
    assert [h["ce-type"] for h, _ in sidecar.received] == [RESPONSE_TYPE]
    assert sidecar.received[0][1]["outputs"][0]["shape"] == [1, 16]
    assert "inputs" not in sidecar.received[0][1]


def test_a_refusing_sidecar_is_retried_until_it_accepts(sidecar_factory):
    sidecar, name = sidecar_factory(statuses=[503, 429]), model()
    logger = RequestLogger(sidecar.url, name, mode="request", retries=3, backoff_s=0.01)
    logger.log({"x": np.ones((1, 2))}, {})
    logger.close()
    assert len(sidecar.received) == 3 and len({h["ce-id"] for h, _ in sidecar.received}) == 1
    assert count("clinops_request_log_sent", name, type="request") == 1
    assert count("clinops_request_log_dropped", name, reason="gave_up") == 0


def test_a_bad_request_answer_is_counted_as_refused_without_retries(sidecar_factory):
    sidecar, name = sidecar_factory(statuses=[400]), model()
    logger = RequestLogger(sidecar.url, name, mode="request", retries=3, backoff_s=0.01)
    logger.log({"x": np.ones((1, 2))}, {})
    logger.close()
    assert len(sidecar.received) == 1
    assert count("clinops_request_log_dropped", name, reason="refused") == 1
    assert count("clinops_request_log_sent", name, type="request") == 0


def test_an_unreachable_sidecar_costs_log_nothing_and_the_loss_is_counted():
    name = model()
    logger = RequestLogger(f"http://127.0.0.1:{free_port()}/", name, retries=3, backoff_s=0.02, timeout_s=0.5)
    started = time.perf_counter()
    for _ in range(3):
        logger.log({"x": np.ones((1, 2))}, {"p": np.ones((1, 1))})
    assert time.perf_counter() - started < 0.05  # three calls, while retries of the first are pending
    assert wait_for(lambda: count("clinops_request_log_dropped", name, reason="gave_up") == 6)
    logger.close()
    assert count("clinops_request_log_sent", name, type="request") == 0


def test_an_overflowing_queue_drops_and_counts_instead_of_waiting():
    name = model()
    logger = RequestLogger(f"http://127.0.0.1:{free_port()}/", name, queue_bytes=100, retries=0, timeout_s=0.5)
    started = time.perf_counter()
    logger.log({"x": np.ones((10, 2))}, {"p": np.ones((10, 1))})  # 240 bytes of arrays
    assert time.perf_counter() - started < 0.05
    assert count("clinops_request_log_dropped", name, reason="queue_full") == 2  # the call's two events
    logger.close()
    assert count("clinops_request_log_dropped", name, reason="gave_up") == 0


def test_events_share_one_kept_alive_connection(sidecar_factory):
    sidecar, name = sidecar_factory(keep_alive=True), model()
    logger = RequestLogger(sidecar.url, name)
    for i in range(20):
        logger.log({"x": np.full((1, 2), float(i))}, {"p": np.ones((1, 1))})
    logger.close()
    assert len(sidecar.received) == 40 and len(sidecar.connections) == 1
    assert [body["inputs"][0]["data"][0] for _, body in sidecar.received[::2]] == [float(i) for i in range(20)]


def test_a_connection_closed_under_an_event_is_reopened_and_the_event_delivered_once(sidecar_factory):
    sidecar, name = sidecar_factory(keep_alive=True, hang_up_on={3}), model()
    logger = RequestLogger(sidecar.url, name, mode="request", backoff_s=0.01)
    for i in range(5):
        logger.log({"x": np.full((1, 2), float(i))}, {})
    logger.close()
    assert [body["inputs"][0]["data"][0] for _, body in sidecar.received] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert sidecar.posts == 6 and len(sidecar.connections) == 2
    assert count("clinops_request_log_sent", name, type="request") == 5
    assert count("clinops_request_log_dropped", name, reason="gave_up") == 0


def test_a_url_that_is_not_http_is_refused_when_the_logger_is_made():
    with pytest.raises(ValueError, match="an http:// or https:// URL is needed"):
        RequestLogger("unix:///tmp/drift.sock", model())


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="all, request, response"):
        RequestLogger("http://127.0.0.1:1/", model(), mode="sometimes")


class RawSidecar:
    """A sidecar on a bare socket, to see how the events arrive: the requests each read from the socket
    carried, and per request the connection, ``ce-type`` and what was done (``answer``, or ``hang_up``: close
    without answering, the requests after it on that connection unread)."""

    def __init__(self, hang_up_on=(), slow_on=()):
        """``slow_on``: the numbers (from 1) of the requests answered only after 0.3 s."""
        self.hang_up_on, self.slow_on, self.seen, self.chunks, self.count = set(hang_up_on), set(slow_on), [], [], 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        for number in range(1000):
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                self._connection(conn, number)

    def _connection(self, conn, number):
        buffer = b""
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buffer += data
            requests = []
            while b"\r\n\r\n" in buffer:
                head, rest = buffer.split(b"\r\n\r\n", 1)
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                if len(rest) < length:
                    break
                requests.append(head)
                buffer = rest[length:]
            self.chunks.append(len(requests))
            for head in requests:
                self.count += 1
                kind = next(line.split(b": ")[1].decode() for line in head.split(b"\r\n")
                            if line.lower().startswith(b"ce-type"))
                if self.count in self.hang_up_on:
                    self.seen.append((number, kind, "hang_up"))
                    return
                self.seen.append((number, kind, "answer"))
                if self.count in self.slow_on:
                    time.sleep(0.3)
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")

    def close(self):
        self.server.close()


def test_once_the_connection_stays_open_a_calls_events_and_those_queued_meanwhile_leave_in_one_write():
    sidecar, name = RawSidecar(slow_on={1}), model()
    logger = RequestLogger(sidecar.url, name)
    logger.log({"x": np.full((1, 2), 0.0)}, {"p": np.ones((1, 1))})
    assert wait_for(lambda: sidecar.count == 1)  # the first request, alone: nothing says yet that the connection
    for i in range(1, 3):                        # stays open; two more calls queue while it is answered
        logger.log({"x": np.full((1, 2), float(i))}, {"p": np.ones((1, 1))})
    assert wait_for(lambda: sidecar.count == 6)
    logger.log({"x": np.full((1, 2), 3.0)}, {"p": np.ones((1, 1))})
    logger.close()
    sidecar.close()
    assert sidecar.chunks == [1, 1, 4, 2]  # then the first response; the two queued calls; the last call
    assert [(c, kind.rsplit(".", 1)[1]) for c, kind, _ in sidecar.seen] == [(0, "request"), (0, "response")] * 4
    assert count("clinops_request_log_sent", name, type="request") == 4
    assert count("clinops_request_log_sent", name, type="response") == 4


def test_a_connection_closed_between_two_pipelined_events_sends_the_unanswered_one_again_only():
    sidecar, name = RawSidecar(hang_up_on={4}), model()  # the 2nd call's response: read, never answered
    logger = RequestLogger(sidecar.url, name, backoff_s=0.01)
    for i in range(3):
        logger.log({"x": np.full((1, 2), float(i))}, {"p": np.ones((1, 1))})
    logger.close()
    sidecar.close()
    answered = [(c, kind.rsplit(".", 1)[1]) for c, kind, what in sidecar.seen if what == "answer"]
    assert answered == [(0, "request"), (0, "response"), (0, "request"), (1, "response"), (1, "request"),
                        (1, "response")]
    assert count("clinops_request_log_sent", name, type="request") == 3
    assert count("clinops_request_log_sent", name, type="response") == 3
    assert count("clinops_request_log_dropped", name, reason="gave_up") == 0


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its parent counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


# -- the agent: a process of its own --------------------------------------------------------------------------
def test_the_events_are_sent_by_an_agent_process_of_its_own(sidecar_factory):
    sidecar, name = sidecar_factory(keep_alive=True), model()
    logger = RequestLogger(sidecar.url, name)
    assert logger.agent_pid != os.getpid()
    assert b"inference.request_log_agent" in Path(f"/proc/{logger.agent_pid}/cmdline").read_bytes()
    logger.log({"x": np.ones((1, 2))}, {"p": np.ones((1, 1))})
    assert wait_for(lambda: count("clinops_request_log_sent", name, type="response") == 1)
    agent = logger.agent_pid
    logger.close()
    assert gone(agent)


def test_an_agent_killed_is_replaced_and_the_calls_it_held_are_counted_lost(sidecar_factory):
    sidecar, name = sidecar_factory(keep_alive=True), model()
    logger = RequestLogger(sidecar.url, name, backoff_s=0.01)
    logger.log({"x": np.full((1, 2), 0.0)}, {"p": np.ones((1, 1))})
    assert wait_for(lambda: count("clinops_request_log_sent", name, type="response") == 1)
    first = logger.agent_pid
    os.kill(first, signal.SIGSTOP)  # it holds the next three calls, then dies with them
    for i in range(1, 4):
        logger.log({"x": np.full((1, 2), float(i))}, {"p": np.ones((1, 1))})
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: logger.agent_pid != first)
    assert wait_for(lambda: count("clinops_request_log_dropped", name, reason="agent_lost") == 6)
    logger.log({"x": np.full((1, 2), 4.0)}, {"p": np.ones((1, 1))})
    logger.close()
    assert [body["inputs"][0]["data"][0] for _, body in sidecar.received[::2]] == [0.0, 4.0]
    assert count("clinops_request_log_sent", name, type="request") == 2
    assert count("clinops_request_log_dropped", name, reason="gave_up") == 0


def test_a_stalled_agent_never_blocks_log_and_every_event_is_accounted_for(sidecar_factory):
    sidecar, name = sidecar_factory(keep_alive=True), model()
    row = np.ones((1, 128))  # 1 KiB a call: 4,000 calls are far more than the socket holds
    logger = RequestLogger(sidecar.url, name, mode="request", queue_bytes=2_000 * row.nbytes)
    os.kill(logger.agent_pid, signal.SIGSTOP)
    for _ in range(4_000):
        logger.log({"x": row}, {})  # returns at once: the frames the socket cannot take wait for the flusher
    dropped = count("clinops_request_log_dropped", name, reason="queue_full")
    assert dropped == 2_000  # the bound is the calls handed over and not yet sent
    os.kill(logger.agent_pid, signal.SIGCONT)
    logger.close(timeout_s=30)
    assert count("clinops_request_log_sent", name, type="request") == len(sidecar.received) == 2_000
    assert count("clinops_request_log_dropped", name, reason="gave_up") == 0


def test_when_the_transformer_dies_its_agent_sends_what_it_holds_and_exits(sidecar_factory, tmp_path):
    sidecar = sidecar_factory(keep_alive=True)
    script = tmp_path / "transformer.py"
    script.write_text(
        "import os, sys\nimport numpy as np\nfrom inference.request_logger import RequestLogger\n"
        f"logger = RequestLogger({sidecar.url!r}, 'dies')\n"
        "for i in range(5):\n    logger.log({'x': np.full((1, 2), float(i))}, {'p': np.ones((1, 1))})\n"
        "print(logger.agent_pid, flush=True)\nos._exit(0)  # no close: as a kill -9\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[3])
    agent = int(done.stdout.split()[0])
    assert wait_for(lambda: gone(agent), timeout_s=15)
    assert [body["inputs"][0]["data"][0] for _, body in sidecar.received[::2]] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert len(sidecar.received) == 10


def test_a_call_that_cannot_be_framed_is_counted_and_the_request_goes_on(sidecar_factory):
    sidecar, name = sidecar_factory(), model()
    logger = RequestLogger(sidecar.url, name)
    logger.log({"x": np.array([["not a number"]], dtype=object)}, {"p": np.ones((1, 1))})  # raises nothing
    logger.log({"x": np.ones((1, 2))}, {"p": np.ones((1, 1))})
    logger.close()
    assert count("clinops_request_log_dropped", name, reason="unencodable") == 2
    assert count("clinops_request_log_sent", name, type="request") == 1 and len(sidecar.received) == 2


def test_the_agent_counts_a_frame_it_cannot_read_and_goes_on():
    from inference.request_log_agent import Agent

    agent = Agent(None, "http://127.0.0.1:1/", model(), "all", {}, retries=0, backoff_s=0.01, timeout_s=0.5)
    assert agent._events_or_count(b'[[["x", "<U1", [1]]], []]', b"a\0\0\0") == []
    assert agent.totals["dropped"]["unencodable"] == 2
    events = agent._events_or_count(b'[[["x", "<f8", [1]]], []]', np.array([2.5]).tobytes())
    assert [kind for kind, _, _ in events] == ["request", "response"]
    assert json.loads(events[0][1])["inputs"][0]["data"] == [2.5]


def test_a_call_larger_than_the_socket_takes_at_once_arrives_whole(sidecar_factory):
    sidecar, name = sidecar_factory(keep_alive=True), model()
    logger = RequestLogger(sidecar.url, name, mode="response")
    embedding = np.arange(32 * 8192, dtype=np.float32).reshape(32, 8192)  # 1 MiB: written in parts by the flusher
    logger.log({}, {"embedding": embedding})
    logger.log({}, {"embedding": embedding[:1] + 1})
    logger.close(timeout_s=30)
    assert [body["outputs"][0]["shape"] for _, body in sidecar.received] == [[32, 8192], [1, 8192]]
    np.testing.assert_array_equal(np.array(sidecar.received[0][1]["outputs"][0]["data"], dtype=np.float32),
                                  embedding.ravel())
    assert sidecar.received[1][1]["outputs"][0]["data"][:2] == [1.0, 2.0]
