"""The pipeline against a real `mlflow server`, and the export against a real S3-compatible server
(moto) through the minio client."""

import json

import joblib
import mlflow
import numpy as np
import pytest

import bundle
from bundle import champion
from components.common import storage
from components.common.publish import champion_uri
from components.common.settings import get_settings
from pipelines import local

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_pipeline_with_mlflow_server_and_s3_store(clinops_home, mlflow_server, s3_server, tmp_path, temp_leftovers):
    # the search and the bootstrap are small: where the run's records go is what is tested here
    record = local.run("heart-disease", "quick", n_trials=3, bootstrap_resamples=200,
                       store="s3://clinops-models/bundles")
    assert record["status"] == "succeeded"
    assert record["bundle_uri"] == "s3://clinops-models/bundles/heart-disease/1"

    client = mlflow.MlflowClient(mlflow_server)
    version = client.get_model_version_by_alias("heart-disease", "champion")
    assert str(version.version) == record["model_version"]
    run = client.get_run(version.run_id)
    assert run.data.metrics["test_roc_auc"] == pytest.approx(record["metrics"]["roc_auc"])
    # nothing went to the embedded SQLite database: the server got it all
    assert not (clinops_home / "mlflow" / "mlflow.db").exists()

    # the bundle is in S3: list it with the minio client, pull it back, load and predict
    keys = {o.object_name for o in get_settings().s3.client().list_objects(
        "clinops-models", prefix="bundles/heart-disease/1/", recursive=True)}
    assert {"bundles/heart-disease/1/model.joblib", "bundles/heart-disease/1/schema.json",
            "bundles/heart-disease/1/bundle.json", "bundles/heart-disease/1/drift/reference.npz"} <= keys
    local_copy = bundle.locate(record["bundle_uri"], "heart-disease", s3=get_settings().s3,
                               cache_dir=tmp_path / "pulled")
    pulled = bundle.open_bundle(local_copy, "heart-disease")  # every file's sha256 as exported
    rows = np.load(pulled.drift_reference_path)["x"][:10]
    served = joblib.load(pulled.model_path)
    registered = mlflow.sklearn.load_model(f"models:/heart-disease/{record['model_version']}",
                                           dst_path=str(tmp_path))
    np.testing.assert_allclose(served.predict_proba(rows), registered.predict_proba(rows))
    assert champion_uri("heart-disease", "s3://clinops-models/bundles") == record["bundle_uri"]
    # the champion found through the pointer in S3, as a runtime given no bundle finds it
    found = bundle.locate(None, "heart-disease", "s3://clinops-models/bundles", get_settings().s3,
                          cache_dir=tmp_path / "champion")
    assert bundle.open_bundle(found).manifest.model_version == record["model_version"]
    assert champion.read("s3://clinops-models/bundles", "pneumonia", get_settings().s3) is None
    assert champion.read("s3://no-such-bucket/bundles", "heart-disease", get_settings().s3) is None
    assert temp_leftovers() == []


def test_s3_round_trip_and_clear_errors(s3_server, tmp_path):
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "nested" / "b.bin").write_bytes(bytes(range(256)))
    storage.upload_dir(src, "s3://roundtrip/x/y")
    back = storage.download_dir("s3://roundtrip/x/y", tmp_path / "back")
    assert (back / "a.txt").read_text() == "alpha"
    assert (back / "nested" / "b.bin").read_bytes() == bytes(range(256))
    with pytest.raises(FileNotFoundError, match="nothing stored under s3://roundtrip/missing"):
        storage.download_dir("s3://roundtrip/missing", tmp_path / "none")
    storage.write_text("s3://roundtrip/pointer.json", json.dumps({"v": 1}))
    assert json.loads(storage.read_text("s3://roundtrip/pointer.json")) == {"v": 1}
    assert get_settings().s3_endpoint == s3_server
