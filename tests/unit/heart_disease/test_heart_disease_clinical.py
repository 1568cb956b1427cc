"""The heart-disease clinical assessment on the real UCI split, and its calibration reaching serving."""

import json

import joblib
import numpy as np
import pytest
from scipy import special

from bundle import MalformedFile, open_bundle
from components.common import gate
from components.common.clinical import calibration as clinical_calibration
from components.heart_disease import evaluation
from components.heart_disease.data import ingest
from components.heart_disease.export import build_bundle
from components.heart_disease.model import build
from components.heart_disease.schema import FEATURES, TARGET
from components.heart_disease.split import split
from components.heart_disease.validation import validate
from inference.transformer.model import make_codec
from inference.transformer.settings import TransformerSettings

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def assessed():
    train, test = split(validate(ingest())[0], 0.2, seed=42)
    pipeline = build("logistic_regression", {"C": 0.3, "l1_ratio": 0.0}).fit(
        train[FEATURES].to_numpy(float), train[TARGET].to_numpy(int))
    result, fold_aucs = evaluation.assess(pipeline, train, test, 0.9, n_resamples=300, seed=42)
    return pipeline, train, test, result, fold_aucs


def test_the_assessment_of_the_real_split(assessed):
    _, train, test, a, fold_aucs = assessed
    m = a.flat_metrics()
    assert m["roc_auc.lower"] < m["roc_auc"] < m["roc_auc.upper"] and m["roc_auc.upper"] - m["roc_auc.lower"] > 0.03
    # the threshold reaches the target on the held-out (out-of-fold) scores it was chosen on, not on test
    oof = evaluation.repeated_cv(assessed[0], train, 1, seed=42)[0][0]
    held = a.recalibration.apply(oof)
    assert (held[train[TARGET] == 1] >= a.threshold).mean() >= 0.9
    assert m["threshold"] == a.threshold and m["target_sensitivity"] == 0.9
    assert len(fold_aucs) == evaluation.CV_REPEATS * evaluation.CV_FOLDS and 0.8 < fold_aucs.mean() < 0.95
    groups = {(g.attribute, g.group): g for gs in a.subgroups.values() for g in gs}
    assert {("sex", "female"), ("sex", "male"), ("age", "under-45"), ("age", "45-60"), ("age", "over-60")} <= set(groups)
    assert sum(g.n for (attr, _), g in groups.items() if attr == "sex") == len(test)
    assert groups[("site", "Switzerland")].too_small  # every Swiss test patient has the disease
    assert "subgroup.site:Switzerland.roc_auc" not in m and "subgroup.sex:female.roc_auc.lower" in m
    card = evaluation.model_card(a.metrics, "logistic_regression", {}, 0.9, len(train), {}, a,
                                 evaluation.outer_estimate(fold_aucs))
    assert "| site | Switzerland | 27 | 1.00 | too small to estimate" in card
    assert f"Served threshold {a.threshold:.3f}" in card and "Repeated cross-validation" in card


def test_a_subgroup_floor_on_the_real_assessment_blocks_promotion(assessed):
    m = assessed[3].flat_metrics()
    worst = min(v for k, v in m.items() if k.startswith("subgroup.") and k.endswith(".roc_auc"))
    assert gate.decide(m, gate.parse_floors(f"subgroup.roc_auc.min={worst - 0.01:.4f}"), "roc_auc", None, None).promote
    blocked = gate.decide(m, gate.parse_floors(f"subgroup.roc_auc.min={worst + 0.01:.4f}"), "roc_auc", None, None)
    assert not blocked.promote and any(r.startswith("subgroup ") and "below the floor" in r for r in blocked.reasons)
    # every Swiss test patient has the disease: no estimate, but the decision says it was passed over
    swiss = "site:Switzerland (n 27, 27 with the condition)"
    assert any(r.startswith("subgroup.roc_auc.min passes over") and swiss in r for r in blocked.reasons)


def test_serving_returns_the_recalibrated_probability_and_thresholds_it(assessed, tmp_path):
    pipeline, train, test, a, _ = assessed
    # an overconfident copy of the model's scores: Platt recalibration is certain to be kept
    oof = evaluation.repeated_cv(pipeline, train, 1, seed=1)[0][0]
    squash = lambda p: special.expit(3 * special.logit(p))  # noqa: E731
    recal = clinical_calibration.choose(train[TARGET].to_numpy(int), squash(oof))
    assert recal.method != clinical_calibration.IDENTITY and recal.brier_after < recal.brier_before
    contract = clinical_calibration.to_contract(recal, 0.9, 0.37, "out-of-fold training scores")
    joblib.dump(pipeline, tmp_path / "model.joblib")
    build_bundle(tmp_path / "b", tmp_path / "model.joblib", train, "heart-disease", "1", 0.5, calibration=contract)
    served = open_bundle(tmp_path / "b", "heart-disease")
    assert served.calibration == contract and served.schema.threshold == 0.37  # the operating point's
    assert "calibration.json" in served.manifest.files
    codec = make_codec("heart-disease", served.schema, TransformerSettings(), served.calibration)
    raw = squash(evaluation.predict(pipeline, test))
    out, _ = codec.decode({"predict_proba": np.c_[1 - raw, raw]})
    expected = recal.apply(raw)
    np.testing.assert_allclose(out["probability"], expected, rtol=1e-6)
    assert out["prediction"].tolist() == (expected >= 0.37).astype(int).tolist()
    # a calibration.json whose threshold disagrees with schema.json is refused
    data = json.loads((tmp_path / "b" / "calibration.json").read_text())
    data["operating_point"]["threshold"] = 0.5
    (tmp_path / "b" / "calibration.json").write_text(json.dumps(data))
    served.manifest.record_files(tmp_path / "b")
    served.manifest.write(tmp_path / "b")
    with pytest.raises(MalformedFile, match="differs from schema.json's threshold 0.37"):
        open_bundle(tmp_path / "b", "heart-disease")
