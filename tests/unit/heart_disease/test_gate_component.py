"""The heart-disease gate component's body through ``.python_func`` on the real (SQLite) MLflow registry:
a champion is read back under the names heart-disease's register step logs, and compared with the candidate
as finely as the evaluate step's settings ask."""

import json

import joblib
import mlflow
import mlflow.sklearn  # the module itself, not its lazy stand-in, so that monkeypatch reaches the component
import pandas as pd
import pytest
from support.kfp_artifacts import Art

from components.common import registry
from components.common.clinical import assessment
from components.heart_disease import component
from components.heart_disease.data import ingest
from components.heart_disease.model import build
from components.heart_disease.schema import FEATURES, TARGET
from components.heart_disease.split import split
from components.heart_disease.validation import validate

pytestmark = pytest.mark.unit

MODEL = "heart-disease"


@pytest.fixture
def unloadable_champion(clinops_home):
    """v1 is champion, registered by a run that logged ``test_roc_auc`` 0.97 as register does, its model a
    folder this gate cannot load (as an older input contract would be); v2 is the candidate."""
    registry.configure(MODEL)
    client = mlflow.MlflowClient()
    client.create_registered_model(MODEL)
    with mlflow.start_run() as run:
        mlflow.log_metrics({"test_roc_auc": 0.97, "cv_roc_auc": 0.89})
    empty = clinops_home / "not-a-model"
    empty.mkdir(parents=True)
    v1 = str(client.create_model_version(MODEL, source=str(empty), run_id=run.info.run_id).version)
    client.set_registered_model_alias(MODEL, registry.CHAMPION, v1)
    v2 = str(client.create_model_version(MODEL, source=str(empty), run_id=None).version)
    return v1, v2


def test_a_champion_that_cannot_be_rescored_keeps_the_alias_on_its_logged_test_roc_auc(unloadable_champion, tmp_path):
    v1, v2 = unloadable_champion
    test = tmp_path / "test.csv"
    pd.DataFrame({"age": [50, 60], "target": [0, 1]}).to_csv(test, index=False)
    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    pd.DataFrame({"y_true": [0, 1], "p_disease": [0.2, 0.8]}).to_csv(evaluation / "predictions.csv", index=False)
    assessment.write_settings(evaluation, 100, 0)
    out = component.gate.python_func(model_name=MODEL, version=v2, test=Art(test), evaluation=Art(evaluation),
                                     metrics_json=json.dumps({"roc_auc": 0.93}), floors="roc_auc=0.85")
    assert out.promoted is False
    assert f"roc_auc 0.9300 loses to champion v{v1} (0.9700)" in out.reasons
    assert registry.alias_version(MODEL, registry.CHAMPION) == v1
    assert registry.alias_version(MODEL, registry.CHALLENGER) == v2
    assert mlflow.MlflowClient().get_model_version(MODEL, v2).tags["gate"] == "rejected"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """The evaluate step's body on a fitted model with ``bootstrap_resamples=250, seed=4``: its outputs by name."""
    out = tmp_path_factory.mktemp("evaluate")
    train, test = split(validate(ingest())[0], 0.25, seed=3)
    pipeline = build("logistic_regression", {"C": 0.3, "l1_ratio": 0.0}).fit(
        train[FEATURES].to_numpy(float), train[TARGET].to_numpy(int))
    joblib.dump(pipeline, out / "model.joblib")
    train.to_csv(out / "train.csv", index=False)
    test.to_csv(out / "test.csv", index=False)
    arts = {name: Art(out / name) for name in ("metrics", "classification", "plots", "model_card", "evaluation")}
    info = {"family": "logistic_regression", "params": {"C": 0.3}, "cv_roc_auc": 0.9, "n_train": len(train)}
    metrics_json = component.evaluate.python_func(
        model=Art(out / "model.joblib"), train=Art(out / "train.csv"), test=Art(out / "test.csv"),
        train_info=json.dumps(info), target_sensitivity=0.9, bootstrap_resamples=250, seed=4, **arts)
    return pipeline, out, arts, metrics_json


def test_the_gate_compares_with_the_champion_on_the_evaluate_steps_resamples(evaluated, clinops_home, monkeypatch):
    pipeline, out, arts, metrics_json = evaluated
    registry.configure(MODEL)
    client = mlflow.MlflowClient()
    client.create_registered_model(MODEL)
    v1, v2 = (str(client.create_model_version(MODEL, source=str(out), run_id=None).version) for _ in range(2))
    client.set_registered_model_alias(MODEL, registry.CHAMPION, v1)
    monkeypatch.setattr(mlflow.sklearn, "load_model", lambda uri, dst_path=None: pipeline)  # v1 is this very model
    result = component.gate.python_func(model_name=MODEL, version=v2, test=Art(out / "test.csv"),
                                        evaluation=arts["evaluation"], metrics_json=metrics_json, floors="")
    assert result.promoted is False and "identical to the champion; champion kept" in result.reasons
    assert "paired bootstrap of 250 resamples" in result.reasons  # evaluate's setting, not the default 1000
    assert "250 resamples" in (out / "model_card").read_text()  # the card's intervals used the same
    assert registry.alias_version(MODEL, registry.CHAMPION) == v1


def test_the_evaluate_report_holds_the_shap_summary_of_the_test_split(evaluated):
    _, out, arts, _ = evaluated
    page = (out / "plots").read_text()
    assert 'alt="shap_summary.png"' in page and "data:image/png;base64," in page
    assert (out / "evaluation" / "plots" / "shap_summary.png").read_bytes()[:4] == b"\x89PNG"
