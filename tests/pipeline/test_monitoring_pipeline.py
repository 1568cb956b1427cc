"""The monitoring pipeline through kfp.local on a synthetic observation log: a deliberately shifted
period is reported as drift (exactly the shifted columns) and starts retraining only when the run
allows it; an in-distribution period does not drift; an empty period says so."""

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pytest
from support import sample_bundles

from bundle import BundleWriter, champion, layout, open_bundle
from bundle.observations import SEGMENTS, Record, segment_name
from components.heart_disease.schema import serving_schema
from pipelines import monitoring

pytestmark = pytest.mark.pipeline

WORKLOAD = "heart-disease"
SHIFTED = ["age", "chol", "cp", "exang", "oldpeak", "score", "thalach", "trestbps"]  # 8 of 14 columns


def log_observations(folder: Path, rows: np.ndarray, scores: np.ndarray, t0: float, first_seq: int,
                     per_event: int = 4, per_segment: int = 40) -> int:
    """Requests and their responses as the sidecar logs them, spread over segment files; returns the next seq."""
    records, seq = [], first_seq
    for i in range(0, len(rows), per_event):
        eid = f"ev-{first_seq}-{i}"
        records.append(Record(seq, t0 + i, eid, "request", tuple(map(tuple, rows[i:i + per_event]))))
        records.append(Record(seq + 1, t0 + i + 0.01, eid, "response",
                              tuple((float(s),) for s in scores[i:i + per_event])))
        seq += 2
    (folder / SEGMENTS).mkdir(parents=True, exist_ok=True)
    for i in range(0, len(records), per_segment):
        chunk = records[i:i + per_segment]
        (folder / SEGMENTS / segment_name(chunk[0].seq)).write_text("".join(r.to_line() for r in chunk))
    return seq


def shift(rows: np.ndarray, names: list[str]) -> np.ndarray:
    out = rows.copy()
    col = {n: names.index(n) for n in names}
    out[:, col["age"]] += 15
    out[:, col["trestbps"]] += 30
    out[:, col["chol"]] *= 1.4
    out[:, col["thalach"]] -= 35
    out[:, col["oldpeak"]] += 2
    out[:, col["cp"]] = 4.0
    out[:, col["exang"]] = 1.0
    return out


def without_score(source: Path, folder: Path) -> Path:
    """The same model and reference rows, as an older bundle with no score reference."""
    opened = open_bundle(source, WORKLOAD)
    writer = BundleWriter(folder, WORKLOAD, layout.SKLEARN, "heart-disease-sample", "0")
    shutil.copyfile(opened.model_path, writer.model_path)
    writer.write_schema(opened.schema)
    with np.load(opened.drift_reference_path) as npz:
        np.savez(writer.drift_reference_path, x=npz["x"])
    writer.write_drift(dataclasses.replace(opened.drift, score=None))
    writer.finish()
    return folder


@pytest.fixture
def watched(clinops_home, tmp_path):
    """A champion bundle in the default store and a log with an in-distribution hour (2–3 h ago) and a
    shifted half hour (the last 30 min)."""
    store = clinops_home / "bundles"
    folder = sample_bundles.write_heart_disease(Path(champion.bundle_uri(str(store), WORKLOAD, "1")), serving_schema())
    champion.write(str(store), champion.ChampionPointer(WORKLOAD, "heart-disease-sample", "1", str(folder)))
    bundle = open_bundle(folder, WORKLOAD)
    names = list(bundle.drift.feature_names)
    model = joblib.load(bundle.model_path)
    with np.load(bundle.drift_reference_path) as npz:
        reference = npz["x"]
    rng = np.random.default_rng(7)
    calm, moved = reference[rng.permutation(len(reference))[:120]], shift(reference[rng.permutation(len(reference))[:120]], names)
    log_dir = clinops_home / "drift" / WORKLOAD  # the sidecar's default folder
    now = time.time()
    seq = log_observations(log_dir, calm, model.predict_proba(calm)[:, 1], now - 3 * 3600, 1)
    log_observations(log_dir, moved, model.predict_proba(moved)[:, 1], now - 1800, seq)
    launcher_log = tmp_path / "launched.jsonl"
    script = tmp_path / "launcher.py"
    script.write_text(f"import json, sys\nwith open({str(launcher_log)!r}, 'a') as f:\n"
                      f"    f.write(json.dumps(sys.argv[1:]) + '\\n')\n")
    return {"now": now, "folder": folder, "launcher": f"{sys.executable} {script}", "launched": launcher_log,
            "tmp": tmp_path, "home": clinops_home}


def launched(watched) -> list[list[str]]:
    path = watched["launched"]
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_shifted_period_drifts_and_retrains_only_when_allowed(watched, temp_leftovers):
    record = monitoring.run(WORKLOAD, hours=1, retrain_on_drift=True, drift_share=0.5,
                            launcher=watched["launcher"])
    assert record["status"] == "succeeded" and record["drift"] is True
    assert sorted(record["drifted"]) == SHIFTED
    assert record["drifted_count"] == 8 and record["drifted_share"] == pytest.approx(8 / 14)
    assert record["rows_current"] == 120 and record["rows_reference"] == 200 and record["events"] == 30
    assert record["model"] == "heart-disease-sample v1"
    assert record["decision"] == {"retrain": True, "reason": "drift found and retraining allowed"}
    assert launched(watched) == [["pipeline", WORKLOAD, "--profile", "quick"]]

    artifacts = {k: Path(v) for k, v in record["artifacts"].items()}
    html = artifacts["html"].read_text()
    assert "window.drawDashboard" in html  # Evidently's own interactive report, with its verdict:
    assert "Drift is detected for 57.143% of columns (8 out of 14)." in html
    report = json.loads(artifacts["json"].read_text())
    assert sorted(report["summary"]["drifted"]) == SHIFTED
    drifted_by_evidently = sorted(m["metric_config"]["params"]["column"] for m in report["evidently"]["tests"]
                                  if m["metric_config"]["params"]["type"].endswith("ValueDrift")
                                  and m["status"] == "FAIL")
    assert drifted_by_evidently == SHIFTED
    methods = {c["column"]: c["method"] for c in report["summary"]["columns"]}
    assert methods["cp"] == "chi-square p_value" and methods["age"] == "K-S p_value"
    md = artifacts["markdown"].read_text()
    assert "**Drift: 8 of 14 columns drifted (57% ≥ 50%)" in md
    assert "| rows: period / reference | 120 / 200 |" in md and "| model (reference) | heart-disease-sample v1 |" in md
    assert next(line for line in md.splitlines() if line.startswith("| age |")).count("**yes**") == 1
    assert "**yes**" not in next(line for line in md.splitlines() if line.startswith("| ca |"))
    assert "UTC to " in record["period"]["text"] and record["period"]["since"] == pytest.approx(
        record["period"]["until"] - 3600)

    # the same period, retraining not allowed: the same verdict, nothing started
    held = monitoring.run(WORKLOAD, hours=1, retrain_on_drift=False, launcher=watched["launcher"])
    assert held["drift"] is True and held["decision"]["retrain"] is False
    assert held["outcome"] == ("retraining not started: drift found; retraining not allowed by this run "
                               "(retrain_on_drift is off)")
    assert len(launched(watched)) == 1
    last = json.loads((watched["home"] / "pipelines" / WORKLOAD / monitoring.LAST_RUN).read_text())
    assert last["status"] == "succeeded" and last["arguments"]["retrain_on_drift"] is False
    assert temp_leftovers() == []


def test_an_in_distribution_period_does_not_drift_and_an_empty_one_says_so(watched, temp_leftovers):
    now = watched["now"]
    old = without_score(watched["folder"], watched["tmp"] / "no-score")
    calm = monitoring.run(WORKLOAD, since=now - 3 * 3600 - 1, until=now - 2 * 3600, retrain_on_drift=True,
                          launcher=watched["launcher"], bundle_uri=str(old))
    assert calm["drift"] is False and calm["drifted"] == [] and calm["rows_current"] == 120
    assert sorted(c["column"] for c in calm["columns"]) == sorted(serving_schema().feature_order)  # no score
    assert calm["model"] == "heart-disease-sample v0"
    assert calm["decision"] == {"retrain": False, "reason": "no drift found"} and launched(watched) == []
    assert "**No drift: 0 of 13 columns drifted (0% < 50%).**" in Path(calm["artifacts"]["markdown"]).read_text()

    empty = monitoring.run(WORKLOAD, since=now - 10 * 3600, until=now - 5 * 3600, retrain_on_drift=True,
                           launcher=watched["launcher"])
    assert empty["drift"] is False and empty["rows_current"] == 0 and launched(watched) == []
    assert empty["verdict"].startswith("No observations for heart-disease from ")
    assert "no logged rows in" in empty["notes"][0]
    for kind in ("html", "markdown"):
        assert "No observations for heart-disease" in Path(empty["artifacts"][kind]).read_text()
    assert json.loads(Path(empty["artifacts"]["json"]).read_text())["evidently"] is None
    assert temp_leftovers() == []


def test_a_wide_embedding_is_reported_on_reference_components(clinops_home, tmp_path, temp_leftovers):
    folder = sample_bundles.write_pneumonia(tmp_path / "pneumonia", embedding_dim=32)
    with np.load(folder / "drift" / "reference.npz") as npz:
        reference = npz["embedding"]
    log_dir = tmp_path / "log"
    (log_dir / SEGMENTS).mkdir(parents=True)
    now = time.time()
    moved = reference[:100] * 1.5 + 0.3  # e.g. a new scanner's contrast
    (log_dir / SEGMENTS / segment_name(1)).write_text("".join(
        Record(i + 1, now - 100 + i, f"e{i}", "response", (tuple(map(float, row)),)).to_line()
        for i, row in enumerate(moved)))
    record = monitoring.run("pneumonia", hours=1, log_dir=str(log_dir), bundle_uri=str(folder), max_dims=8)
    assert record["drift"] is True and record["rows_current"] == 100 and record["rows_reference"] == 200
    assert [c["column"] for c in record["columns"]] == [f"pc{i}" for i in range(1, 9)]
    assert record["notes"][0].startswith("Embedding: 32 dimensions projected on the first 8 principal components")
    assert "principal components of the reference" in Path(record["artifacts"]["markdown"]).read_text()
    assert temp_leftovers() == []
