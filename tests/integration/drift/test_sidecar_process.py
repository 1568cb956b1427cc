"""The drift sidecar as the process a pod runs, under the drift environment's interpreter: CloudEvents in
over HTTP as KServe's logger sends them, verdicts and metrics out, and ``kill -9`` mid-stream with
nothing lost or counted twice."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from support import sample_bundles
from support.processes import start_process, stop_process, wait_http

from components.heart_disease.schema import serving_schema
from pipelines.local_stack import DRIFT_RUNTIME, REPO_ROOT, drift_python, free_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
WINDOW = 20


@pytest.fixture(scope="module")
def heart_bundle(tmp_path_factory) -> tuple[Path, object]:
    import joblib

    folder = sample_bundles.write_heart_disease(tmp_path_factory.mktemp("heart"), serving_schema(), window=WINDOW)
    return folder, joblib.load(folder / "model.joblib")


class Sidecar:
    """``python -m inference.drift`` on a free port, restartable on the same log folder."""

    def __init__(self, bundle: Path, log_dir: Path, scratch: Path, extra: tuple[str, ...] = ()):
        if not Path(drift_python()).exists():
            pytest.fail(f"no drift environment at {drift_python()}: `make venv` builds it")
        self.bundle, self.log_dir, self.scratch, self.extra = bundle, log_dir, scratch, list(extra)
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.starts = 0

    def start(self) -> Sidecar:
        self.starts += 1
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TRANSFORMERS_VERBOSITY": "error"}
        self.proc = start_process([drift_python(), "-m", DRIFT_RUNTIME, "--workload", "heart-disease",
                                   "--bundle", str(self.bundle), "--port", str(self.port),
                                   "--log_dir", str(self.log_dir), *self.extra], self.scratch / f"sidecar-{self.starts}.log",
                                  env=env, cwd=REPO_ROOT)
        wait_http(f"{self.url}/healthz", timeout=60, proc=self.proc)
        return self

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc)

    def status(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/v1/drift?limit=200", timeout=5) as response:
            return json.loads(response.read())

    def metric(self, name: str, **labels) -> float:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            text = response.read().decode()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{name}{{{want}}} not exported")

    def wait_windows(self, count: int, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status["windows_tested"] >= count:
                return status
            time.sleep(0.2)
        raise TimeoutError(f"{count} windows not tested; status {self.status()['window']}")


def binary_event(kind: str, event_id: str, body: dict) -> tuple[dict, bytes]:
    """What KServe's agent sends: binary content mode, the payload as the body."""
    return ({"ce-specversion": "1.0", "ce-id": event_id, "ce-type": f"org.kubeflow.serving.inference.{kind}",
             "ce-source": "http://heart-disease-predictor.clinical/", "ce-inferenceservicename": "heart-disease",
             "ce-namespace": "clinical", "ce-component": "predictor", "ce-endpoint": "default",
             "content-type": "application/json"}, json.dumps(body).encode())


def structured_event(kind: str, event_id: str, body: dict) -> tuple[dict, bytes]:
    return ({"content-type": "application/cloudevents+json"},
            json.dumps({"specversion": "1.0", "id": event_id, "source": "/clients/batch",
                        "type": f"org.kubeflow.serving.inference.{kind}", "datacontenttype": "application/json",
                        "data": body}).encode())


def request_body(rows: np.ndarray) -> dict:
    return {"inputs": [{"name": "features", "shape": list(rows.shape), "datatype": "FP64",
                        "data": [None if np.isnan(v) else float(v) for v in rows.ravel()]}]}


def response_body(proba: np.ndarray) -> dict:
    return {"model_name": "heart-disease", "outputs": [{"name": "predict_proba", "shape": list(proba.shape),
                                                        "datatype": "FP64", "data": proba.ravel().tolist()}]}


def post(url: str, headers: dict, body: bytes, retry_s: float = 0) -> int:
    """POST an event; with ``retry_s`` a refused connection is retried, as a logger does."""
    deadline = time.monotonic() + retry_s
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url + "/", data=body, headers=headers), timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def send_pair(sidecar: Sidecar, model, rows: np.ndarray, mode=binary_event, retry_s: float = 0) -> str:
    event_id = uuid.uuid4().hex
    for kind, body in (("request", request_body(rows)), ("response", response_body(model.predict_proba(rows)))):
        headers, payload = mode(kind, event_id, body)
        assert post(sidecar.url, headers, payload, retry_s) == 200
    return event_id


def test_events_in_both_modes_give_verdicts_and_metrics(heart_bundle, tmp_path):
    folder, model = heart_bundle
    sidecar = Sidecar(folder, tmp_path / "log", tmp_path).start()
    try:
        rows = sample_bundles.heart_rows(serving_schema(), 4 * WINDOW, seed=11)
        shifted = rows.copy()
        shifted[:, 0] = np.clip(shifted[:, 0] + 30, 1, 120)  # thirty years older: age and the risk move
        for i in range(0, 2 * WINDOW, 5):  # two clean windows: binary mode, then structured
            send_pair(sidecar, model, rows[i:i + 5], binary_event if i < WINDOW else structured_event)
        for i in range(0, 2 * WINDOW, 5):
            send_pair(sidecar, model, shifted[i:i + 5])
        status = sidecar.wait_windows(4)
        verdicts = status["verdicts"]
        assert [v["window"]["rows"] for v in verdicts] == [WINDOW] * 4
        assert [v["window"]["events"] for v in verdicts] == [4] * 4  # request + response paired into one each
        assert [v["is_drift"] for v in verdicts[2:]] == [True, True]
        age = [{t["name"]: t for t in v["features"]}["age"] for v in verdicts]
        assert max(a["p_val"] for a in age[2:]) < 1e-4 < min(a["p_val"] for a in age[:2])
        assert all(v["score"]["test"] == "CVMDrift" and v["rows_tested"] == {"inputs": WINDOW, "outputs": WINDOW}
                   for v in verdicts)
        assert status["model_version"] == "1" and status["window"]["rows"] == 0
        assert sidecar.metric("clinops_drift_events_processed_total", workload="heart-disease", type="request") == 16
        assert sidecar.metric("clinops_drift_windows_total", workload="heart-disease", drift="true") >= 2
        assert sidecar.metric("clinops_drift_is_drift", workload="heart-disease") == 1
        assert sidecar.metric("clinops_drift_p_value", workload="heart-disease", feature="age") == age[-1]["p_val"]
        # a malformed event is a 400 naming the problem, counted, and the sidecar goes on
        headers, payload = binary_event("request", "bad-1", {"inputs": [{"name": "features", "shape": [1, 13],
                                                                          "datatype": "FP64", "data": [1.0] * 12}]})
        assert post(sidecar.url, headers, payload) == 400
        assert post(sidecar.url, {"content-type": "application/json"}, b"{}") == 400
        assert sidecar.metric("clinops_drift_events_rejected_total", workload="heart-disease", reason="shape") == 1
        send_pair(sidecar, model, rows[:3])
        assert sidecar.status()["window"]["rows"] == 3
    finally:
        sidecar.stop()
    text = (tmp_path / "log" / "verdicts.jsonl").read_text()
    assert f"{rows[0, 3]!r}" not in text  # verdicts hold statistics, never a patient's values
    assert oct((tmp_path / "log" / "verdicts.jsonl").stat().st_mode & 0o777) == "0o600"


def test_kill_9_mid_stream_loses_nothing_and_counts_nothing_twice(heart_bundle, tmp_path):
    folder, model = heart_bundle
    sidecar = Sidecar(folder, tmp_path / "log", tmp_path).start()
    rows = sample_bundles.heart_rows(serving_schema(), 97, seed=5)
    sent = 0
    try:
        for i in range(0, 97, 3):
            if i == 51:  # mid-window (two windows of 20 tested, 11 rows in the third): kill -9, restart
                sidecar.kill9()
                sidecar.start()
            batch = rows[i:i + 3]
            send_pair(sidecar, model, batch, retry_s=30)
            sent += len(batch)
        status = sidecar.wait_windows(sent // WINDOW)
    finally:
        sidecar.stop()
    verdicts = status["verdicts"]
    assert len(verdicts) == sent // WINDOW == 4
    tested = sum(v["window"]["rows"] for v in verdicts)
    assert tested + status["window"]["rows"] == sent == 97  # nothing lost
    spans = [(v["window"]["first_seq"], v["window"]["last_seq"]) for v in verdicts]
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))  # nothing counted twice
    assert sidecar.starts == 2


def raw_event(port: int, headers: dict, body: bytes) -> tuple[socket.socket, bytes]:
    """A connection to the sidecar and the bytes of one POST / carrying an event."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return sock, (f"POST / HTTP/1.1\r\nHost: sidecar\r\n{head}Content-Length: {len(body)}\r\n\r\n").encode() + body


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def test_past_its_in_flight_bound_an_event_is_refused_429_unread_and_its_retry_is_taken(heart_bundle, tmp_path):
    """An event still arriving holds the one place of ``--max_in_flight_events 1``: the next is answered 429 with
    Retry-After from its request line, counted, and taken when sent again; the held one is taken too."""
    folder, model = heart_bundle
    sidecar = Sidecar(folder, tmp_path / "log", tmp_path, extra=("--max_in_flight_events", "1")).start()
    try:
        rows = sample_bundles.heart_rows(serving_schema(), 2, seed=3)
        held, held_bytes = raw_event(sidecar.port, *binary_event("request", "held-1", request_body(rows[:1])))
        held.sendall(held_bytes[:-10])  # headers and most of the body: inside the sidecar, waiting for the rest
        time.sleep(0.3)
        headers, body = binary_event("request", "refused-1", request_body(rows[1:]))
        refused, refused_bytes = raw_event(sidecar.port, headers, body)
        refused.sendall(refused_bytes)
        status, answer_headers, answer = read_answer(refused)
        assert status == 429 and answer_headers["retry-after"] == "1"
        assert json.loads(answer) == {"error": "1 events are in flight, the bound (max_in_flight_events): retry "
                                               "after 1 s", "reason": "in_flight"}
        assert sidecar.metric("clinops_drift_events_rejected_total", workload="heart-disease", reason="in_flight") == 1
        held.sendall(held_bytes[-10:])
        assert read_answer(held)[0] == 200
        time.sleep(1)  # as Retry-After says
        refused.sendall(refused_bytes)  # the sender's retry, on the same kept-alive connection
        status, _, answer = read_answer(refused)
        assert status == 200 and json.loads(answer)["id"] == "refused-1"
        for name in ("clinops_drift_events_received_total", "clinops_drift_events_processed_total"):
            assert sidecar.metric(name, workload="heart-disease", type="request") == 2  # the refusal was never parsed
        held.close()
        refused.close()
    finally:
        sidecar.stop()
