"""The sidecar's core without HTTP: what it answers to each event, its backpressure, and a restart after a
kill -9 that neither loses nor double-counts a row."""

import asyncio
import errno
import json
import os
import time

import numpy as np
import pytest
from drift_fakes import FakeDetector, event

from bundle import observations
from bundle.observations import REQUEST, RESPONSE
from inference.drift.service import DriftService
from inference.drift.settings import DriftSettings
from inference.drift.verdicts import FILE as VERDICTS

pytestmark = pytest.mark.unit

W = "heart-disease"
MARKER = 987.654321  # a feature value that no verdict may repeat


class Clock:
    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def make(tmp_path, bundle, detector=None, **overrides):
    settings = DriftSettings(workload=W, log_dir=str(tmp_path / "drift"), **{"window_size": 4, "min_rows": 1,
                                                                               **overrides})
    return DriftService(settings, bundle, detector or FakeDetector(), clock=Clock())


def rejected(service, reason):
    return service.metrics.registry.get_sample_value("clinops_drift_events_rejected_total",
                                                     {"workload": W, "reason": reason}) or 0.0


def counter(service, name, **labels):
    return service.metrics.registry.get_sample_value(f"{name}_total", {"workload": W, **labels}) or 0.0


def log_lines(service):
    return [r for r in observations.read(service.store.log_dir)]


def test_good_events_are_acknowledged_with_their_seq_and_unneeded_halves_ignored(tmp_path, heart_bundle):
    service = make(tmp_path, heart_bundle)
    first = service.accept(*event("a", [[1.0, 2.0]]))
    second = service.accept(*event("b", [[3.0, np.nan], [5.0, 6.0]]))
    assert (first.status, first.body) == (200, {"status": "accepted", "id": "a", "type": REQUEST, "seq": 1})
    assert (second.status, second.body["seq"]) == (200, 2)
    ignored = service.accept(*event("a", [[0.7]], kind=RESPONSE))
    assert (ignored.status, ignored.body["status"]) == (200, "ignored")
    assert [(r.seq, r.id, len(r.rows)) for r in log_lines(service)] == [(1, "a", 1), (2, "b", 2)]
    assert counter(service, "clinops_drift_events_processed", type=REQUEST) == 2
    assert counter(service, "clinops_drift_events_ignored", type=RESPONSE) == 1
    assert service.metrics.registry.get_sample_value("clinops_drift_window_rows", {"workload": W}) == 3
    service.close()


def test_a_retried_event_is_acknowledged_as_duplicate_and_kept_once(tmp_path, heart_bundle):
    service = make(tmp_path, heart_bundle)
    assert service.accept(*event("a", [[1.0, 2.0]])).status == 200
    again = service.accept(*event("a", [[1.0, 2.0]]))
    assert (again.status, again.body) == (200, {"status": "duplicate", "id": "a", "type": REQUEST})
    assert len(log_lines(service)) == 1 and service.windower.rows == 1
    assert counter(service, "clinops_drift_events_duplicate") == 1
    service.close()
    restarted = make(tmp_path, heart_bundle)  # the memory of ids survives a restart, from the log
    assert restarted.accept(*event("a", [[1.0, 2.0]])).body["status"] == "duplicate"
    assert restarted.windower.rows == 1
    restarted.close()


class SlowFsync:
    """``os.fsync`` taking ``seconds``, as a disk does: records how far the store had written at each call."""

    def __init__(self, monkeypatch, store, seconds=0.02, error=None):
        self.store, self.seconds, self.error, self.covered = store, seconds, error, []
        monkeypatch.setattr(os, "fsync", self)

    def __call__(self, fd):
        if self.error:
            raise self.error
        name = os.readlink(f"/proc/self/fd/{fd}")
        self.covered.append(self.store.next_seq - 1 if name.endswith(".jsonl") and "/segments/" in name
                            else name.rsplit("/", 1)[1])
        time.sleep(self.seconds)


async def answers_when_durable(service, events):
    """Each event's answer, and how far the store was durable when that answer came back."""
    async def one(ev):
        answer = await service.accept_durably(*ev)
        return answer, service.store.synced_seq

    return await asyncio.gather(*(one(ev) for ev in events))


def test_with_fsync_an_event_is_acknowledged_only_once_durable_and_concurrent_ones_share_an_fsync(
        tmp_path, heart_bundle, monkeypatch):
    service = make(tmp_path, heart_bundle, fsync=True, window_size=100)
    fsync = SlowFsync(monkeypatch, service.store)
    got = asyncio.run(answers_when_durable(service, [event(f"e{i}", [[float(i)]]) for i in range(12)]))
    assert [a.body["seq"] for a, _ in got] == list(range(1, 13))
    assert all(a.status == 200 and durable >= a.body["seq"] for a, durable in got)
    # one fsync covers every event written before it began: the twelve took one or two, not twelve
    assert fsync.covered[-1] == 12 and len(fsync.covered) <= 2
    again = asyncio.run(answers_when_durable(service, [event("e13", [[1.0]]), event("e13", [[1.0]])]))
    assert [(a.body["status"], durable) for a, durable in again] == [("accepted", 13), ("duplicate", 13)]
    service.close()


def test_an_fsync_that_fails_is_a_503_to_retry_counted_as_log_unwritable(tmp_path, heart_bundle, monkeypatch):
    service = make(tmp_path, heart_bundle, fsync=True)
    SlowFsync(monkeypatch, service.store, error=OSError(errno.EIO, os.strerror(errno.EIO)))
    [(answer, durable)] = asyncio.run(answers_when_durable(service, [event("a", [[1.0]])]))
    assert (answer.status, answer.body["reason"], answer.retry_after, durable) == (503, "log_unwritable", 5, 0)
    assert "Input/output error" in answer.body["error"] and rejected(service, "log_unwritable") == 1
    monkeypatch.undo()
    service.close()


def test_with_fsync_a_window_is_tested_only_over_durable_rows(tmp_path, heart_bundle, monkeypatch):
    service = make(tmp_path, heart_bundle, fsync=True)
    fsync = SlowFsync(monkeypatch, service.store, seconds=0)
    for i in range(4):  # through accept, which writes but does not wait for the disk: a window closes
        assert service.accept(*event(f"e{i}", [[float(i)]])).status == 200
    assert fsync.covered == [] and service.test_queued() == 1
    assert fsync.covered == [4, VERDICTS] and service.store.synced_seq == 4  # the log's rows, then the verdict
    service.close()


@pytest.mark.parametrize("headers, body, reason", [
    ({"content-type": "application/json"}, b'{"inputs": []}', "not_a_cloudevent"),
    ({**event("a", [[1.0]])[0], "ce-type": "org.example.other"}, event("a", [[1.0]])[1], "event_type"),
    ({**event("a", [[1.0]])[0], "ce-id": ""}, event("a", [[1.0]])[1], "event_id"),
    (event("a", [[1.0]])[0], b"{not json", "body"),
    (event("a", [[1.0]])[0], b'{"inputs": [{"name": "y", "shape": [1], "datatype": "FP64", "data": [1]}]}',
     "tensor_missing"),
    (event("a", [[1.0]])[0], b'{"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}',
     "datatype"),
    (event("a", [[1.0]])[0], b'{"inputs": [{"name": "x", "shape": [3], "datatype": "FP64", "data": [1]}]}', "shape"),
    (event("a", [[1.0]])[0], b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1, Infinity]}]}',
     "data"),
])
def test_a_malformed_event_is_a_400_counted_by_reason_and_nothing_is_stored(tmp_path, heart_bundle, headers, body,
                                                                             reason):
    service = make(tmp_path, heart_bundle)
    answer = service.accept(headers, body)
    assert answer.status == 400 and answer.body["reason"] == reason and answer.body["error"]
    assert rejected(service, reason) == 1
    assert log_lines(service) == [] and service.store.next_seq == 1
    assert service.accept(*event("b", [[1.0]])).status == 200  # and the sidecar goes on
    service.close()


def test_an_oversized_body_is_a_413(tmp_path, heart_bundle):
    service = make(tmp_path, heart_bundle, max_body_bytes=200)
    answer = service.accept(*event("big", np.ones((20, 2))))
    assert answer.status == 413 and answer.body["reason"] == "body_too_large"
    assert rejected(service, "body_too_large") == 1 and log_lines(service) == []
    service.close()


def test_windows_waiting_for_the_detector_make_the_sender_retry_with_429(tmp_path, heart_bundle):
    service = make(tmp_path, heart_bundle, window_size=1, max_windows_queued=2)
    assert [service.accept(*event(f"e{i}", [[1.0]])).status for i in range(2)] == [200, 200]
    refused = service.accept(*event("e2", [[1.0]]))
    assert (refused.status, refused.retry_after, refused.body["reason"]) == (429, 1, "backpressure")
    assert rejected(service, "backpressure") == 1 and len(log_lines(service)) == 2
    assert service.test_queued() == 2
    assert service.accept(*event("e2", [[1.0]])).status == 200  # the retry, once the detector caught up
    service.close()


def test_full_pending_refuses_new_halves_but_takes_the_partners_that_complete_pairs(tmp_path, heart_bundle):
    service = make(tmp_path, heart_bundle, FakeDetector(needs=frozenset({REQUEST, RESPONSE})), window_size=100,
                   max_pending=2)
    assert [service.accept(*event(f"p{i}", [[1.0]])).status for i in range(2)] == [200, 200]
    refused = service.accept(*event("p2", [[1.0]]))  # a third waiting request: past max_pending
    assert (refused.status, refused.body["reason"]) == (429, "backpressure")
    # the responses of the waiting requests shrink pending, so they are taken (refusing them livelocked a
    # busy sidecar: every slot held by a half whose partner kept being refused until the pair timeout)
    assert [service.accept(*event(f"p{i}", [[0.5]], kind=RESPONSE)).status for i in range(2)] == [200, 200]
    assert len(service.windower.pending) == 0 and service.windower.rows == 2
    assert service.accept(*event("p2", [[1.0]])).status == 200  # the refused one, retried, now fits
    assert rejected(service, "backpressure") == 1
    service.close()


def test_a_full_log_of_untested_observations_is_a_503(tmp_path, heart_bundle):
    service = make(tmp_path, heart_bundle, window_size=100, max_log_bytes=100)
    assert service.accept(*event("a", [[1.0, 2.0]])).status == 200
    assert 50 < service.store.bytes < 100  # one line
    assert service.accept(*event("b", [[1.0, 2.0]])).status == 200
    full = service.accept(*event("c", [[1.0, 2.0]]))
    assert (full.status, full.retry_after, full.body["reason"]) == (503, 5, "log_full")
    assert rejected(service, "log_full") == 1
    assert [r.id for r in log_lines(service)] == ["a", "b"]
    service.close()


def send(service, count, first=0, rows_of=lambda i: 1 + i % 3):
    """Events e<first>… with 1 to 3 rows each (a MARKER in each); returns the rows sent."""
    total = 0
    for i in range(first, first + count):
        n = rows_of(i)
        answer = service.accept(*event(f"e{i}", [[MARKER, float(i)]] * n))
        assert answer.status == 200, answer.body
        total += n
    return total


def verdict_lines(tmp_path):
    return [json.loads(line) for line in (tmp_path / "drift" / VERDICTS).read_text().splitlines()]


def assert_windows_contiguous(verdicts):
    seqs = [(v["window"]["first_seq"], v["window"]["last_seq"]) for v in verdicts]
    assert seqs[0][0] == 1
    for (_, last), (first, _) in zip(seqs, seqs[1:], strict=False):
        assert first == last + 1, seqs


def test_kill_9_before_any_verdict_then_restart_tests_every_row_once(tmp_path, heart_bundle):
    service = make(tmp_path, heart_bundle, window_size=5)
    sent = send(service, 13, rows_of=lambda i: 2)  # 26 rows
    assert len(service.queue) == 4 and service.windower.rows == 2  # windows of 3 events (6 rows), 2 rows wait
    del service  # kill -9: no close(), no verdict; and a last event cut mid-write, never acknowledged
    segment = observations.segments(tmp_path / "drift")[-1]
    with segment.open("ab") as handle:
        handle.write(b'{"seq":14,"t":1800000000.0,"id":"e13","type":"request","rows":[[98')
    restarted = make(tmp_path, heart_bundle, window_size=5)
    assert restarted.store.next_seq == 14
    assert restarted.test_queued() == 4
    verdicts = verdict_lines(tmp_path)
    assert_windows_contiguous(verdicts)
    assert [v["window"]["rows"] for v in verdicts] == [6, 6, 6, 6]
    assert sum(v["window"]["rows"] for v in verdicts) + restarted.windower.rows == sent == 26
    assert restarted.windower.rows == 2
    assert [v["rows_tested"]["inputs"] for v in verdicts] == [v["window"]["rows"] for v in verdicts]
    assert restarted.accept(*event("e13", [[1.0, 2.0]])).body["seq"] == 14  # the cut event, retried
    restarted.close()


def test_a_restart_after_verdicts_resumes_the_partly_filled_window(tmp_path, heart_bundle):
    service = make(tmp_path, heart_bundle, window_size=6)
    sent = send(service, 10)  # 19 rows
    assert service.test_queued() == 3
    tested = sum(v["window"]["rows"] for v in verdict_lines(tmp_path))
    assert service.windower.rows == sent - tested > 0
    service.close()
    restarted = make(tmp_path, heart_bundle, window_size=6)
    assert restarted.windower.rows == sent - tested and restarted.queue == []
    assert restarted.verdicts.count == 3
    sent += send(restarted, 7, first=10)
    restarted.test_queued()
    verdicts = verdict_lines(tmp_path)
    assert_windows_contiguous(verdicts)
    assert sum(v["window"]["rows"] for v in verdicts) + restarted.windower.rows == sent
    restarted.close()


def test_a_verdict_cut_mid_write_is_tested_again_not_lost_or_counted_twice(tmp_path, heart_bundle):
    service = make(tmp_path, heart_bundle, window_size=5)
    sent = send(service, 16, rows_of=lambda i: 1)  # three windows of 5, one row waits
    service.test_queued()
    path = tmp_path / "drift" / VERDICTS
    whole = path.read_bytes()
    last_start = whole.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(whole[: last_start + 40])  # kill -9 while writing the third verdict
    restarted = make(tmp_path, heart_bundle, window_size=5)
    assert restarted.verdicts.count == 2 and len(restarted.queue) == 1
    restarted.test_queued()
    verdicts = verdict_lines(tmp_path)
    assert len(verdicts) == 3
    assert_windows_contiguous(verdicts)
    assert sum(v["window"]["rows"] for v in verdicts) + restarted.windower.rows == sent
    restarted.close()


def test_a_restart_keeps_requests_waiting_for_their_response(tmp_path, heart_bundle):
    detector = FakeDetector(needs=frozenset({REQUEST, RESPONSE}))
    service = make(tmp_path, heart_bundle, detector, window_size=3)
    for i in range(4):
        service.accept(*event(f"e{i}", [[float(i), 0.0]]))
        service.accept(*event(f"e{i}", [[0.5]], kind=RESPONSE))
    service.accept(*event("e4", [[4.0, 0.0]]))  # its response comes after the restart
    service.test_queued()
    assert list(service.windower.pending) == ["e4"] and service.windower.rows == 1
    service.close()
    detector = FakeDetector(needs=frozenset({REQUEST, RESPONSE}))
    restarted = make(tmp_path, heart_bundle, detector, window_size=3)
    assert list(restarted.windower.pending) == ["e4"] and restarted.windower.rows == 1
    restarted.accept(*event("e4", [[0.5]], kind=RESPONSE))
    restarted.accept(*event("e5", [[5.0, 0.0]]))
    restarted.accept(*event("e5", [[0.5]], kind=RESPONSE))
    assert restarted.test_queued() == 1
    window = detector.windows[0]
    assert [(o.id, o.outputs is not None) for o in window.observations] == [("e3", True), ("e4", True), ("e5", True)]
    restarted.close()


def test_verdicts_hold_counts_and_p_values_never_payload_values(tmp_path, heart_bundle):
    service = make(tmp_path, heart_bundle, window_size=4, alert_url=None)
    send(service, 6)
    assert service.test_queued() >= 2
    text = (tmp_path / "drift" / VERDICTS).read_text()
    assert str(MARKER) not in text and "987.65" not in text
    assert str(MARKER) in (observations.segments(tmp_path / "drift")[0]).read_text()  # it was sent and logged
    verdict = json.loads(text.splitlines()[0])
    assert verdict["features"] == [{"name": "x0", "test": "KS", "p_val": 0.5, "distance": 0.1}]
    assert verdict["model_name"] == "heart-disease-sample" and verdict["detector"] == "FakeDrift"
    service.close()


def test_a_detector_error_is_recorded_as_an_untested_verdict_and_counted(tmp_path, heart_bundle):
    service = make(tmp_path, heart_bundle, FakeDetector(fail=True), window_size=2)
    send(service, 2, rows_of=lambda i: 1)
    assert service.test_queued() == 1
    verdict = verdict_lines(tmp_path)[0]
    assert (verdict["tested"], verdict["is_drift"]) == (False, False)
    assert verdict["error"] == "RuntimeError: the detector broke"
    assert counter(service, "clinops_drift_detector_errors") == 1 and service.queue == []
    service.close()


def test_a_drifted_window_sets_the_gauges(tmp_path, heart_bundle):
    service = make(tmp_path, heart_bundle, FakeDetector(drift_above=100.0), window_size=2)
    send(service, 2, rows_of=lambda i: 1)  # first feature MARKER: above 100
    service.test_queued()
    registry = service.metrics.registry
    assert registry.get_sample_value("clinops_drift_is_drift", {"workload": W}) == 1
    assert registry.get_sample_value("clinops_drift_windows_total", {"workload": W, "drift": "true"}) == 1
    assert registry.get_sample_value("clinops_drift_p_value", {"workload": W, "feature": "x0"}) == 0.5
    service.close()


class AlertReceiver:
    """A retraining trigger on localhost: records each CloudEvent; answers after ``delay_s``."""

    def __init__(self, delay_s: float = 0.0):
        import http.server
        import threading

        received, self.delay_s = [], delay_s
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                import time

                body = self.rfile.read(int(self.headers["content-length"]))
                time.sleep(owner.delay_s)
                received.append((dict(self.headers), body))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.received = received
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_drifted_window_is_announced_as_a_cloudevent_without_holding_up_detection(tmp_path, heart_bundle):
    import time

    from inference.drift.service import ALERT_TYPE

    receiver = AlertReceiver(delay_s=1.5)  # a slow trigger
    service = make(tmp_path, heart_bundle, FakeDetector(drift_above=100.0), window_size=2, alert_url=receiver.url)
    send(service, 4, rows_of=lambda i: 1)  # two windows, both drifted
    started = time.perf_counter()
    assert service.test_queued() == 2
    assert time.perf_counter() - started < 1.0  # the detector went on while the first alert was in flight
    service.close()  # waits for the alerts already decided
    receiver.close()
    assert len(receiver.received) == 2
    headers, body = receiver.received[0]
    envelope = json.loads(body)
    assert headers["Content-Type"].startswith("application/cloudevents+json")
    assert (envelope["type"], envelope["source"]) == (ALERT_TYPE, f"/clinops/drift/{W}")
    assert envelope["data"]["is_drift"] is True and envelope["data"]["workload"] == W
    assert envelope["data"]["window"]["rows"] == 2 and envelope["data"]["features"][0]["name"] == "x0"
    assert str(MARKER) not in body.decode()  # p-values and counts, never a payload
    assert counter(service, "clinops_drift_alerts_sent", outcome="delivered") == 2


def test_p_value_gauges_hold_only_the_dimensions_the_last_verdict_reported():
    """An embedding detector reports its lowest dimensions, a different set each window: the gauges of
    the others must go, or /metrics shows stale p-values and its label set grows towards every dimension."""
    from inference.drift.metrics import DriftMetrics

    metrics = DriftMetrics(workload="pneumonia")

    def verdict(dims):
        return {"is_drift": False, "detector_seconds": 0.01, "score": None, "threshold": {"features": 0.01},
                "dims": 1280, "drifted_dims": 0, "features": [{"name": d, "p_val": 0.3} for d in dims]}

    metrics.record_verdict(verdict(["dim_3", "dim_7"]))
    metrics.record_verdict(verdict(["dim_7", "dim_9"]))
    shown = {s.labels["feature"] for m in metrics.registry.collect() if m.name == "clinops_drift_p_value"
             for s in m.samples}
    assert shown == {"dim_7", "dim_9"}


def test_a_chunked_body_over_the_limit_is_a_413_before_it_is_read_whole(tmp_path, heart_bundle):
    from starlette.testclient import TestClient

    from inference.drift.app import build_app

    service = make(tmp_path, heart_bundle, max_body_bytes=4096)
    def chunks():  # no Content-Length: the body arrives in pieces, 1 MiB in all
        for _ in range(256):
            yield b"x" * 4096

    headers, small = event("ok", [[1.0, 2.0]])
    with TestClient(build_app(service)) as client:
        answer = client.post("/", content=chunks(), headers=headers)
        assert answer.status_code == 413 and "the limit is 4096 bytes" in answer.json()["error"]
        assert client.post("/", content=small, headers=headers).status_code == 200  # and it goes on serving
    assert rejected(service, "body_too_large") == 1 and [r.id for r in log_lines(service)] == ["ok"]


def test_events_over_http_get_the_services_answer_with_json_and_retry_after_and_other_methods_a_405(
        tmp_path, heart_bundle):
    from starlette.testclient import TestClient

    from inference.drift.app import build_app

    service = make(tmp_path, heart_bundle, FakeDetector(needs=frozenset({REQUEST, RESPONSE})), window_size=100,
                   max_pending=2)
    with TestClient(build_app(service)) as client:
        taken = [client.post("/", content=body, headers=headers)
                 for headers, body in (event(f"h{i}", [[1.0]]) for i in range(2))]
        assert [(a.status_code, a.headers["content-type"], a.json()["status"], a.json()["id"]) for a in taken] == [
            (200, "application/json", "accepted", "h0"), (200, "application/json", "accepted", "h1")]
        headers, body = event("h2", [[1.0]])
        refused = client.post("/", content=body, headers=headers)  # a third waiting half: past max_pending
        assert (refused.status_code, refused.headers["retry-after"], refused.json()["reason"]) == (
            429, "1", "backpressure")
        bad = client.post("/", content=b"{not json", headers=headers)
        assert (bad.status_code, bad.json()["reason"]) == (400, "body") and "not JSON" in bad.json()["error"]
        assert "retry-after" not in bad.headers
        wrong = client.get("/")
        assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST") and "POST" in wrong.json()["error"]
        assert client.get("/healthz").json() == {"status": "ok", "workload": W}
        assert client.get("/v1/drift").status_code == 200
    assert rejected(service, "backpressure") == 1 and rejected(service, "method_not_allowed") == 1
    assert [r.id for r in log_lines(service)] == ["h0", "h1"]
