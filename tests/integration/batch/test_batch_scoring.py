"""Batch scoring on Ray Data against the real local serving stack: the same rows and images get the same
probabilities, labels and top features from a batch run as from the V2 endpoints; bad rows are refused
with the online reasons, counted, and the run completes; the work ran on two Ray actors that opened the
bundle once each; a CSV is read from a real S3 server (moto)."""

import base64
import csv
import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from support import sample_bundles
from support.v2_calls import post

from components.heart_disease.schema import serving_schema
from inference.batch import run
from pipelines.local_stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
BAD_ROWS = {  # 1-based CSV row -> (feature, bad text, the codec's reason)
    3: ("chol", "0", "out_of_range"), 7: ("cp", "sideways", "unknown_category"),
    8: ("age", "", "missing_value"), 20: ("trestbps", "high", "datatype")}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    return {"heart-disease": sample_bundles.write_heart_disease(root / "heart", serving_schema()),
            "pneumonia": sample_bundles.write_pneumonia(root / "pneumonia", height=32, width=28, channels=1)}


@pytest.fixture(scope="module")
def stack(bundles, tmp_path_factory):
    with LocalStack({k: str(v) for k, v in bundles.items()}, ports="ephemeral", log_dir=tmp_path_factory.mktemp("logs"),
                    drift_dir=tmp_path_factory.mktemp("drift"), ready_timeout_s=180,
                    extra_args={"pneumonia/predictor": ["--device", "cpu"]}) as running:
        yield running


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


def patient_table(n: int, seed: int) -> list[dict]:
    """Rows as a clinician's export writes them: text labels for categories, numbers, empty = missing."""
    schema = serving_schema()
    rows = sample_bundles.heart_rows(schema, n, seed)
    table = []
    for i, row in enumerate(rows, start=1):
        record = {"patient": f"p{i:03d}"}
        for feature, value in zip(schema.features, row, strict=True):
            if np.isnan(value):
                record[feature.name] = ""
            elif feature.kind == "categorical":
                record[feature.name] = feature.codes[int(value)]
            else:
                record[feature.name] = f"{value:g}"
        table.append(record)
    for row, (feature, text, _) in BAD_ROWS.items():
        if row <= n:
            table[row - 1][feature] = text
    return table


def write_csv(path, table) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)


def online_inputs(record: dict) -> list[dict]:
    """The V2 request a client builds for one patient: BYTES labels, FP64 numbers, null = missing."""
    inputs = []
    for feature in serving_schema().features:
        text = record[feature.name]
        if feature.kind == "categorical":
            inputs.append({"name": feature.name, "shape": [1], "datatype": "BYTES", "data": [text or None]})
        else:
            try:
                value = float(text) if text else None
            except ValueError:
                value = text
            inputs.append({"name": feature.name, "shape": [1], "datatype": "FP64", "data": [value]})
    return inputs


def test_heart_disease_batch_equals_online_with_bad_rows_reported_on_two_actors(stack, bundles, local_ray, tmp_path):
    table = patient_table(48, seed=5)
    write_csv(tmp_path / "patients.csv", table)
    record = run.score("heart-disease", str(tmp_path / "patients.csv"), tmp_path / "out",
                       bundle_uri=str(bundles["heart-disease"]), actors=2, batch_size=6, progress=lambda _: None)
    results = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()
    assert [r["row"] for r in results] == list(range(1, 49))  # every row, in order, none dropped
    assert [r["patient"] for r in results] == [t["patient"] for t in table]  # other columns carried
    assert record["rows"] == 48 and record["scored"] == 44 and record["refused"] == 4
    assert record["refused_by_reason"] == {"out_of_range": 1, "unknown_category": 1, "missing_value": 1,
                                           "datatype": 1}

    url = f"{stack.endpoints['heart-disease'].rest_url}/v2/models/heart-disease/infer"
    for result, patient in zip(results, table, strict=True):
        status, answer = post(url, {"inputs": online_inputs(patient), "outputs": [
            {"name": n} for n in ("probability", "prediction", "risk_level", "explanation")]})
        if result["row"] in BAD_ROWS:
            feature, _, reason = BAD_ROWS[result["row"]]
            assert status == 400 and result["status"] == "refused" and result["reason"] == reason
            assert result["error"].startswith(f"{feature}: ") and result["error"].split(": ", 1)[1] in answer["error"]
            assert result["probability"] is None and result["top_features"] is None
            continue
        assert status == 200, answer
        online = {o["name"]: o["data"][0] for o in answer["outputs"]}
        assert result["status"] == "scored"
        np.testing.assert_allclose(result["probability"], online["probability"], rtol=1e-6)
        assert result["prediction"] == online["prediction"] and result["risk_level"] == online["risk_level"]
        assert result["top_features"] == json.loads(online["explanation"])["top"]

    # the Ray Data path: a pool of two actors, each having opened the bundle once, did the work; which of them
    # takes each block is Ray's choice (on a loaded machine the first one ready may take all eight)
    actors = {r["scorer"].split(":")[0] for r in results}
    assert 1 <= len(actors) <= 2 and "local" not in actors, actors
    assert {r["scorer"].rsplit(":", 1)[1] for r in results} == {"load-1"}
    assert record["actors"] == 2 and record["bundle_loads"] == 2
    stats = (tmp_path / "out" / "ray-stats.txt").read_text()
    assert "MapBatches(HeartDiseaseScorer): 8 tasks executed" in stats, stats
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sum(summary["counts"]["prediction"].values()) == 44
    assert sorted(r["row"] for r in summary["refused_rows"]) == sorted(BAD_ROWS)
    assert "data:image/png;base64," in (tmp_path / "out" / "report.html").read_text()
    assert "| unknown_category | 1 |" in (tmp_path / "out" / "report.md").read_text()


def test_pneumonia_batch_equals_online_and_a_corrupt_file_is_refused(stack, bundles, local_ray, tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "xrays"
    (folder / "ward").mkdir(parents=True)
    files = {}
    for i in range(20):
        size = (int(rng.integers(20, 60)), int(rng.integers(20, 60)))
        image = Image.fromarray(rng.integers(0, 256, size=size, dtype=np.uint8), mode="L")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG" if i % 2 else "JPEG")
        path = folder / "ward" / f"img{i:02d}.{'png' if i % 2 else 'jpeg'}"
        path.write_bytes(buffer.getvalue())
        files[str(path.resolve())] = buffer.getvalue()
    (folder / "ward" / "broken.png").write_bytes(b"\x89PNG not really")
    record = run.score("pneumonia", str(folder), tmp_path / "out", bundle_uri=str(bundles["pneumonia"]), actors=2,
                       batch_size=4, progress=lambda _: None)
    results = {r["path"]: r for r in pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()}
    assert record["rows"] == 21 and record["scored"] == 20 and record["refused_by_reason"] == {"undecodable_image": 1}
    broken = results[str((folder / "ward" / "broken.png").resolve())]
    assert broken["status"] == "refused" and broken["probability"] is None
    assert broken["error"] == "image: not a decodable JPEG or PNG image"

    url = f"{stack.endpoints['pneumonia'].rest_url}/v2/models/pneumonia/infer"
    paths = sorted(files)
    status, answer = post(url, {"inputs": [{"name": "image", "shape": [len(paths)], "datatype": "BYTES",
                                            "data": [base64.b64encode(files[p]).decode() for p in paths]}]})
    assert status == 200, answer
    online = {o["name"]: o["data"] for o in answer["outputs"]}
    np.testing.assert_allclose([results[p]["probability"] for p in paths], online["probability"], rtol=1e-6)
    assert [results[p]["label"] for p in paths] == online["label"]
    # Ray actors scored, each having opened the bundle once; on a loaded machine (two test workers on two
    # cores) the first actor ready may take every block before the second one has started
    scorers = {r["scorer"].split(":")[0] for r in results.values()}
    assert 1 <= record["actors"] == len(scorers) <= 2 and "local" not in scorers, scorers
    assert {r["scorer"].rsplit(":", 1)[1] for r in results.values()} == {"load-1"}


def test_a_csv_on_s3_is_scored(s3_server, bundles, tmp_path):
    from bundle.storage import S3Config

    table = patient_table(12, seed=9)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(table[0]))
    writer.writeheader()
    writer.writerows(table)
    client = S3Config(s3_server, "clinops-test", "clinops-test-secret", "us-east-1").client()
    client.make_bucket("intake")
    data = buffer.getvalue().encode()
    client.put_object("intake", "ward-7/patients.csv", io.BytesIO(data), len(data))
    record = run.score("heart-disease", "s3://intake/ward-7/patients.csv", tmp_path / "out",
                       bundle_uri=str(bundles["heart-disease"]), engine="loop", progress=lambda _: None)
    local = tmp_path / "patients.csv"
    local.write_bytes(data)
    again = run.score("heart-disease", str(local), tmp_path / "again", bundle_uri=str(bundles["heart-disease"]),
                      engine="loop", progress=lambda _: None)
    assert record["rows"] == 12 and record["refused"] == 3  # rows 3, 7 and 8 of BAD_ROWS
    from_s3 = pq.read_table(tmp_path / "out" / "results.parquet").drop(["scorer"])
    assert from_s3.equals(pq.read_table(tmp_path / "again" / "results.parquet").drop(["scorer"]))
    assert again["counts"] == record["counts"]
    with pytest.raises(run.inputs.InputError, match="nothing stored at s3://intake/ward-7/missing.csv"):
        run.score("heart-disease", "s3://intake/ward-7/missing.csv", tmp_path / "none",
                  bundle_uri=str(bundles["heart-disease"]), engine="loop", progress=lambda _: None)
