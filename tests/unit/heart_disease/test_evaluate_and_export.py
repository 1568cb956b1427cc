"""Evaluate and export logic: metric values, model card, and a bundle that honours the contract."""


import joblib
import numpy as np
import pytest
from sklearn import metrics as skm

from bundle import open_bundle
from components.common.metrics import binary_metrics, roc_points, youden_threshold
from components.heart_disease import evaluation
from components.heart_disease.data import ingest
from components.heart_disease.export import build_bundle
from components.heart_disease.model import build
from components.heart_disease.schema import CATEGORICAL, FEATURES, TARGET
from components.heart_disease.split import split
from components.heart_disease.validation import validate

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def fitted():
    train, test = split(validate(ingest())[0], 0.25, seed=3)
    pipeline = build("logistic_regression", {"C": 0.3, "l1_ratio": 0.0}).fit(
        train[FEATURES].to_numpy(float), train[TARGET].to_numpy(int))
    return pipeline, train, test


def test_binary_metrics_match_sklearn_and_the_confusion_counts():
    y = np.array([0, 0, 1, 1, 1, 0, 1, 0])
    p = np.array([0.1, 0.6, 0.8, 0.4, 0.9, 0.2, 0.7, 0.3])
    m = binary_metrics(y, p, threshold=0.5)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    # predictions: 0 1 1 0 1 0 1 0 → TP 3, FN 1, TN 3, FP 1
    assert (m["sensitivity"], m["specificity"], m["accuracy"]) == (0.75, 0.75, 0.75)
    with pytest.raises(ValueError, match="both classes"):
        binary_metrics([1, 1], [0.2, 0.9])


def test_roc_points_are_thinned_and_bounded():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    p = np.clip(y * 0.3 + rng.random(5000) * 0.7, 0, 1)
    fpr, tpr, thr = roc_points(y, p, max_points=100)
    assert len(fpr) <= 100 and fpr[0] == 0.0 and fpr[-1] == 1.0
    assert all(0.0 <= t <= 1.0 for t in thr)
    assert 0.0 < youden_threshold(y, p) < 1.0


def test_evaluate_and_model_card(fitted):
    pipeline, train, test = fitted
    values, p = evaluation.evaluate(pipeline, test, threshold=0.5)
    assert values["n"] == len(test) and 0.85 < values["roc_auc"] <= 1.0
    sites = evaluation.per_site(test, p, 0.5)
    assert set(sites) <= {"Cleveland", "Hungary", "Switzerland", "VA Long Beach"}
    assert sum(s["n"] for s in sites.values()) <= len(test)
    card = evaluation.model_card(values, "logistic_regression", {"C": 0.3}, 0.9, len(train), sites)
    assert f"| roc_auc | {values['roc_auc']:.4f} |" in card
    assert "## Limitations" in card


def test_bundle_honours_the_serving_contract(fitted, tmp_path):
    pipeline, train, _ = fitted
    joblib.dump(pipeline, tmp_path / "model.joblib")
    build_bundle(tmp_path / "bundle", tmp_path / "model.joblib", train, "heart-disease", "7", threshold=0.4,
                 metrics={"roc_auc": 0.9}, run_id="r1", promoted=True)
    folder = tmp_path / "bundle"
    served_bundle = open_bundle(folder, "heart-disease", "sklearn")
    assert served_bundle.manifest.model_version == "7" and served_bundle.manifest.promoted is True
    schema = served_bundle.schema
    assert list(schema.feature_order) == FEATURES and schema.threshold == 0.4
    assert schema.feature("cp").labels["asymptomatic"] == 4
    assert schema.feature("chol").min == 70 and schema.feature("age").nullable is False
    arrays = np.load(folder / "drift" / "reference.npz")
    reference, scores = arrays["x"], arrays["score"]
    assert reference.shape == (min(500, len(train)), 13) and scores.shape == (len(reference), 1)
    # out-of-fold scores: each row scored by a copy of the model that did not train on it, so they are
    # less confident than the model's scores on its own training rows, yet still separate the classes
    in_sample = pipeline.predict_proba(train[FEATURES].to_numpy(float))[:, 1]
    assert 0 < np.abs(scores - 0.5).mean() < np.abs(in_sample - 0.5).mean()
    drift = served_bundle.drift
    assert drift.detector == "TabularDrift" and list(drift.feature_names) == FEATURES
    assert list(drift.categorical) == CATEGORICAL and drift.window.size == 50 and drift.correction == "fdr"
    assert drift.score.output == "predict_proba" and drift.score.column == 1 and drift.score.test == "CVMDrift"
    assert drift.p_val + drift.score.p_val <= 0.05  # the window's false-positive budget
    served = joblib.load(folder / "model.joblib")
    np.testing.assert_allclose(served.predict_proba(reference[:5]), pipeline.predict_proba(reference[:5]))
