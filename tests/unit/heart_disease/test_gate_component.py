"""The heart-disease gate component's body through ``.python_func`` on the real (SQLite) MLflow registry:
a champion is read back under the names heart-disease's register step logs."""

import json

import mlflow
import pandas as pd
import pytest

from components.common import registry
from components.heart_disease import component

pytestmark = pytest.mark.unit

MODEL = "heart-disease"


class Art:
    def __init__(self, path):
        self.path, self.metadata = str(path), {}


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
    out = component.gate.python_func(model_name=MODEL, version=v2, test=Art(test), evaluation=Art(evaluation),
                                     metrics_json=json.dumps({"roc_auc": 0.93}), floors="roc_auc=0.85")
    assert out.promoted is False
    assert f"roc_auc 0.9300 loses to champion v{v1} (0.9700)" in out.reasons
    assert registry.alias_version(MODEL, registry.CHAMPION) == v1
    assert registry.alias_version(MODEL, registry.CHALLENGER) == v2
    assert mlflow.MlflowClient().get_model_version(MODEL, v2).tags["gate"] == "rejected"
