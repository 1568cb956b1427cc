"""The real local stack with both drift sidecars: client traffic through the transformers reaches each
sidecar as the KServe logger's events, verdicts and metrics come out, and a sidecar killed mid-stream
and restarted loses nothing that the transformers sent."""

from __future__ import annotations

import base64
import json
import time
import urllib.request

import numpy as np
import pytest
from images import encode, random_image
from support import sample_bundles

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
HEART_WINDOW = 50  # the sample bundle's window


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        return json.loads(response.read())


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _metric(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def heart_body(rows: np.ndarray, names: list[str]) -> dict:
    return {"inputs": [{"name": name, "shape": [len(rows)], "datatype": "FP64",
                        "data": [None if np.isnan(v) else float(v) for v in rows[:, j]]}
                       for j, name in enumerate(names)]}


def wait_windows(drift_url: str, count: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = json.loads(_get(f"{drift_url}/v1/drift?limit=200"))
        if status["windows_tested"] >= count or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def close_open_window(endpoint, names: list[str], heart_schema) -> int:
    """Fill the sidecar's open window (the session's stack has served other tests' rows) with in-distribution
    rows, so the next request starts a window of its own; the number of windows tested by then."""
    status = wait_windows(endpoint.drift_url, 0)
    deadline = time.monotonic() + 30
    while (status["window"]["pending"] or status["window"]["queued"]) and time.monotonic() < deadline:
        time.sleep(0.2)
        status = wait_windows(endpoint.drift_url, 0)
    open_rows = status["window"]["rows"]
    if not open_rows:
        return status["windows_tested"]
    filler = sample_bundles.heart_rows(heart_schema, HEART_WINDOW - open_rows, seed=20)
    _post(endpoint.infer_url, heart_body(filler, names))
    return wait_windows(endpoint.drift_url, status["windows_tested"] + 1)["windows_tested"]


def test_traffic_through_the_transformer_reaches_the_heart_disease_sidecar(stack, heart_schema):
    endpoint = stack.endpoints["heart-disease"]
    names = list(heart_schema.feature_order)
    before = close_open_window(endpoint, names, heart_schema)
    rows = sample_bundles.heart_rows(heart_schema, 2 * HEART_WINDOW, seed=21)
    older = rows.copy()
    older[:, names.index("age")] = np.clip(older[:, names.index("age")] + 30, 1, 110)
    for block in (rows[:HEART_WINDOW], rows[HEART_WINDOW:], older[:HEART_WINDOW], older[HEART_WINDOW:]):
        _post(endpoint.infer_url, heart_body(block, names))  # one request = one predictor call = one window
    status = wait_windows(endpoint.drift_url, before + 4)
    verdicts = status["verdicts"][-4:]
    assert status["windows_tested"] == before + 4
    assert [v["window"]["rows"] for v in verdicts] == [HEART_WINDOW] * 4
    assert [v["is_drift"] for v in verdicts[2:]] == [True, True]
    ages = [{t["name"]: t["p_val"] for t in v["features"]}["age"] for v in verdicts]
    assert max(ages[2:]) < 1e-6 < min(ages[:2])
    assert all(v["rows_tested"] == {"inputs": HEART_WINDOW, "outputs": HEART_WINDOW} for v in verdicts)
    transformer = _get(f"{endpoint.rest_url}/metrics")
    assert _metric(transformer, "clinops_request_log_sent_total", model="heart-disease", type="response") >= 4
    assert _metric(transformer, "clinops_request_log_dropped_total", model="heart-disease") == 0
    sidecar = _get(f"{endpoint.drift_url}/metrics")
    assert _metric(sidecar, "clinops_drift_is_drift", workload="heart-disease") == 1


def test_pneumonia_sidecar_reads_embeddings_from_responses_only(stack):
    endpoint = stack.endpoints["pneumonia"]

    def rows_seen() -> tuple[int, dict]:
        status = json.loads(_get(f"{endpoint.drift_url}/v1/drift?limit=200"))
        return status["window"]["rows"] + sum(v["window"]["rows"] for v in status["verdicts"]), status

    before, _ = rows_seen()  # the session's stack: other modules' images came before
    files = [encode(random_image(40, 36, 1, seed=s)) for s in range(8)]
    _post(endpoint.infer_url, {"inputs": [{"name": "image", "shape": [len(files)], "datatype": "BYTES",
                                            "data": [base64.b64encode(f).decode() for f in files]}]})
    # the transformer may hand the eight images to its predictor in more than one call (one response
    # event each): wait for all eight rows, not for the first event
    deadline = time.monotonic() + 30
    seen, status = rows_seen()
    while seen < before + 8 and time.monotonic() < deadline:
        time.sleep(0.2)
        seen, status = rows_seen()
    sidecar = _get(f"{endpoint.drift_url}/metrics")
    assert _metric(sidecar, "clinops_drift_events_processed_total", workload="pneumonia", type="response") >= 1
    assert _metric(sidecar, "clinops_drift_events_received_total", workload="pneumonia", type="request") == 0
    assert status["detector"] == "KSDrift" and seen >= before + 8, (before, seen)


def test_a_sidecar_killed_mid_stream_loses_nothing_the_transformer_sent(stack, heart_schema):
    endpoint = stack.endpoints["heart-disease"]
    names = list(heart_schema.feature_order)
    first = wait_windows(endpoint.drift_url, 0)
    start_rows = first["window"]["rows"] + sum(v["window"]["rows"] for v in first["verdicts"])
    assert len(first["verdicts"]) == first["windows_tested"]  # all of them in view: the sums below are whole
    rows = sample_bundles.heart_rows(heart_schema, 120, seed=33)
    for i in range(0, 120, 6):
        if i == 60:
            stack.kill_drift("heart-disease")  # kill -9: the transformer's logger retries while it is down
            time.sleep(0.5)
            stack.start_drift("heart-disease")
        _post(endpoint.infer_url, heart_body(rows[i:i + 6], names))  # requests never wait for the sidecar
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = json.loads(_get(f"{endpoint.drift_url}/v1/drift?limit=200"))
        seen = status["window"]["rows"] + sum(v["window"]["rows"] for v in status["verdicts"])
        if seen >= start_rows + 120:
            break
        time.sleep(0.3)
    assert status["windows_tested"] > first["windows_tested"]
    assert seen == start_rows + 120  # every row sent, once, across the restart
    transformer = _get(f"{endpoint.rest_url}/metrics")
    assert _metric(transformer, "clinops_request_log_dropped_total", model="heart-disease") == 0


def test_make_eval_drift_judges_a_window_as_the_live_sidecar_does(stack, bundles, heart_schema, tmp_path):
    """``make eval-drift`` judges windows it draws itself, in the drift environment, with the sidecar's
    detector (tests/bench/drift_judge.py); the live sidecar must give the same verdicts for the same rows,
    or the measured rates would describe something that does not run."""
    import os
    import subprocess
    from pathlib import Path

    import joblib

    from bundle import open_bundle

    endpoint = stack.endpoints["heart-disease"]
    names = list(heart_schema.feature_order)
    before = close_open_window(endpoint, names, heart_schema)
    clean = sample_bundles.heart_rows(heart_schema, 2 * HEART_WINDOW, seed=41)
    shifted = sample_bundles.heart_rows(heart_schema, HEART_WINDOW, seed=42)
    shifted[:, names.index("age")] = np.clip(shifted[:, names.index("age")] + 12, 1, 110)
    windows = [clean[:HEART_WINDOW], clean[HEART_WINDOW:], shifted]
    for rows in windows:
        _post(endpoint.infer_url, heart_body(rows, names))
    status = wait_windows(endpoint.drift_url, before + len(windows))
    live = status["verdicts"][-len(windows):]
    assert status["windows_tested"] == before + len(windows)
    assert [v["window"]["rows"] for v in live] == [HEART_WINDOW] * len(windows)

    bundle = open_bundle(bundles["heart-disease"], "heart-disease")
    with np.load(bundle.drift_reference_path) as reference:
        x_ref, score_ref = reference["x"], reference["score"][:, 0]
    model = joblib.load(bundle.model_path)
    x = np.concatenate([x_ref, *windows])
    problem = {"kind": np.array("tabular"), "settings": np.array(json.dumps(bundle.drift.to_dict())), "x": x,
               "ref_rows": np.arange(len(x_ref))[None], "ref_scores": score_ref[None],
               "scores": model.predict_proba(x)[:, 1][None],
               "win_split": np.zeros(len(windows), int), "win_len": np.full(len(windows), HEART_WINDOW),
               "win_scenario": np.array(["none", "none", "age"]),
               "win_rows": len(x_ref) + np.arange(len(windows) * HEART_WINDOW)}
    np.savez(tmp_path / "problem.npz", **problem)
    root = Path(__file__).resolve().parents[3]
    subprocess.run([os.environ.get("CLINOPS_DRIFT_PYTHON", str(root / ".venv-drift/bin/python")),
                    str(root / "tests/bench/drift_judge.py"), str(tmp_path / "problem.npz"),
                    str(tmp_path / "result.npz")], check=True, timeout=120, env={**os.environ, "PYTHONPATH": str(root)})
    with np.load(tmp_path / "result.npz") as result:
        offline, lowest = result["ours"].tolist(), result["lowest_p"]

    def live_lowest(verdict):
        p = [t["p_val"] for t in verdict["features"]] + ([verdict["score"]["p_val"]] if verdict.get("score") else [])
        return min(p)

    assert offline == [v["is_drift"] for v in live]
    assert offline[-1] is True  # the check means something: one of the windows is flagged, by both
    np.testing.assert_allclose(lowest, [live_lowest(v) for v in live], rtol=1e-3)
