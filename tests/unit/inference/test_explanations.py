"""Feature attributions of the heart-disease predictor and their clinical wording: properties SHAP
guarantees (additivity, zero for an ignored feature), on every model family training can choose."""

import asyncio
import json

import joblib
import numpy as np
import pytest
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput
from support import sample_bundles
from support.uci_models import FAMILIES, uci_rows

from components.heart_disease import model as heart_model
from components.heart_disease.schema import FEATURES, serving_schema
from inference.envelope import BadRequest
from inference.errors import RejectedInput
from inference.reasons import Reason
from inference.sklearn_predictor.explain import (
    LOG_ODDS,
    PROBABILITY,
    Explainer,
    NotExplainable,
    column_groups,
)
from inference.sklearn_predictor.model import SklearnPredictor
from inference.sklearn_predictor.settings import SklearnPredictorSettings
from inference.transformer import v1_explain
from inference.transformer.tabular_explanation import explain_rows, sentence

pytestmark = pytest.mark.unit
ADDITIVITY_TOL = 1e-9  # |base + sum(attributions) - model output|, in the explained space


@pytest.fixture(scope="module")
def uci():
    return uci_rows()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_attributions_add_up_to_the_model_output_for_every_family(uci, family):
    x, y = uci
    pipeline = heart_model.build(family, FAMILIES[family]).fit(x, y)
    explainer = Explainer(pipeline, x[:150])
    gaps = np.flatnonzero(np.isnan(x).any(axis=1))
    rows = np.concatenate([x[200:230], x[gaps[:30]]])  # with missing values: indicators credited to their feature
    attributions, base = explainer.explain(rows)
    assert attributions.shape == (60, len(FEATURES))
    estimator, z = pipeline[-1], pipeline[:-1].transform(rows)
    if family == "random_forest":
        assert explainer.space == PROBABILITY
        expected = estimator.predict_proba(z)[:, 1]
    else:
        assert explainer.space == LOG_ODDS
        expected = estimator.decision_function(z)
    np.testing.assert_allclose(base + attributions.sum(axis=1), expected, atol=ADDITIVITY_TOL)
    assert np.abs(attributions).max() > 0.01  # not all zero: the test could fail


def test_a_feature_the_model_ignores_gets_exactly_zero(uci):
    x, y = uci
    pipeline = heart_model.build("logistic_regression", FAMILIES["logistic_regression"]).fit(x, y)
    groups = column_groups(pipeline[:-1], len(FEATURES))
    ignored = FEATURES.index("chol")
    pipeline[-1].coef_[0, groups == ignored] = 0.0  # the model no longer looks at cholesterol or its absence
    attributions, _ = Explainer(pipeline, x[:150]).explain(x[300:340])
    assert np.all(attributions[:, ignored] == 0.0)
    assert np.abs(np.delete(attributions, ignored, axis=1)).max() > 0.01

    constant = x.copy()
    constant[:, FEATURES.index("fbs")] = 0.0  # trees never split on a constant column
    forest = heart_model.build("gradient_boosting", FAMILIES["gradient_boosting"]).fit(constant, y)
    attributions, _ = Explainer(forest, constant[:150]).explain(constant[300:340])
    assert np.all(attributions[:, FEATURES.index("fbs")] == 0.0)


def test_every_model_column_is_credited_to_the_feature_it_comes_from(uci):
    x, y = uci
    pipeline = heart_model.build("logistic_regression", FAMILIES["logistic_regression"]).fit(x, y)
    groups = column_groups(pipeline[:-1], len(FEATURES))
    counts = np.bincount(groups, minlength=len(FEATURES))
    cp = FEATURES.index("cp")
    assert counts[cp] == 4 + (1 if np.isnan(x[:, cp]).any() else 0)  # its one-hot categories
    assert counts[FEATURES.index("age")] == 1  # never missing: no indicator
    assert counts[FEATURES.index("chol")] == 2  # value and missingness indicator


def test_an_estimator_that_is_neither_linear_nor_trees_is_refused_by_name(uci):
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline

    x, y = uci
    pipeline = Pipeline([("preprocess", heart_model.preprocessor()), ("model", KNeighborsClassifier())]).fit(x, y)
    with pytest.raises(NotExplainable, match="KNeighborsClassifier is neither linear nor a tree ensemble"):
        Explainer(pipeline, x[:50])


def _predictor(folder):
    predictor = SklearnPredictor(SklearnPredictorSettings(model_name="heart-disease", bundle=str(folder)))
    predictor.load()
    return predictor


def _request(rows, outputs=()):
    tensor = InferInput("features", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows, binary_data=False)
    return InferRequest(model_name="heart-disease", infer_inputs=[tensor],
                        request_outputs=[RequestedOutput(name) for name in outputs] or None)


def test_the_predictor_gives_attributions_only_when_asked(heart_bundle, heart_schema):
    predictor = _predictor(heart_bundle)
    rows = sample_bundles.heart_rows(heart_schema, 6, seed=11)

    async def call(outputs):
        response, _ = await predictor(_request(rows, outputs))
        return {out.name: out.as_numpy() for out in response.outputs}

    plain = asyncio.run(call(()))
    assert set(plain) == {"predict_proba"}
    explained = asyncio.run(call(("predict_proba", "attributions", "base_value", "attribution_space")))
    np.testing.assert_allclose(explained["predict_proba"], plain["predict_proba"])
    pipeline = joblib.load(heart_bundle / "model.joblib")
    logit = pipeline[-1].decision_function(pipeline[:-1].transform(rows))
    np.testing.assert_allclose(explained["base_value"] + explained["attributions"].sum(axis=1), logit,
                               atol=ADDITIVITY_TOL)
    assert [v.decode() if isinstance(v, bytes) else v for v in explained["attribution_space"]] == [LOG_ODDS] * 6
    predictor.stop()


def test_a_model_without_attributions_refuses_the_request_naming_why(heart_bundle):
    predictor = _predictor(heart_bundle)
    predictor.explain_batcher, predictor.not_explainable = None, "KNeighborsClassifier is neither linear nor trees"
    with pytest.raises(RejectedInput) as err:
        asyncio.run(predictor(_request(np.zeros((1, 13)) + 1, ("attributions",))))
    assert err.value.kind == Reason.UNKNOWN_OUTPUT
    assert "gives no attributions: KNeighborsClassifier" in str(err.value)
    predictor.stop()


def test_the_explanation_names_each_feature_in_clinical_terms():
    schema = serving_schema()
    order = list(schema.feature_order)
    row = np.full((1, len(order)), np.nan)
    row[0, order.index("age")], row[0, order.index("sex")], row[0, order.index("cp")] = 63, 1, 4
    row[0, order.index("oldpeak")] = 2.3
    attributions = np.zeros((1, len(order)))
    attributions[0, order.index("oldpeak")] = 0.9
    attributions[0, order.index("cp")] = 0.5
    attributions[0, order.index("chol")] = -0.2
    (document,) = explain_rows(schema, row, attributions, np.array([-0.4]), np.array([LOG_ODDS], dtype=object),
                               np.array([0.73]))
    doc = json.loads(document)
    assert doc["top"] == ["ST depression 2.3 mm raises the risk", "Chest pain type: asymptomatic raises the risk",
                          "Serum cholesterol not recorded lowers the risk"]
    assert doc["model_output"] == pytest.approx(-0.4 + 0.9 + 0.5 - 0.2)
    assert [f["name"] for f in doc["features"][:3]] == ["oldpeak", "cp", "chol"]
    assert doc["features"][1] == {"name": "cp", "title": "Chest pain type", "value": "asymptomatic",
                                       "display": "asymptomatic", "contribution": 0.5}
    assert doc["features"][2]["value"] is None and doc["probability"] == pytest.approx(0.73)
    assert len(doc["features"]) == len(order)
    age = schema.feature("age")
    assert sentence(age, "40 years", -0.1) == "Age 40 years lowers the risk"


@pytest.mark.parametrize("body,kind,fragment", [
    ({"inputs": []}, Reason.PROTOCOL, 'the V1 :explain body is {"instances": [...]}'),
    ({"instances": [[1, 2]]}, Reason.SHAPE, "instance 0: 2 values; 13 are needed"),
    ({"instances": [{"age": 50, "heart": 1}]}, Reason.UNKNOWN_INPUT, "instance 0: unknown feature 'heart'"),
    ({"instances": [{"age": 50}]}, Reason.MISSING_INPUT, "instance 0: missing feature 'sex'"),
    ({"instances": [dict.fromkeys(FEATURES, 1) | {"age": [50]}]}, Reason.DATATYPE, "instance 0: 'age' is [50]"),
    ({"instances": ["x"]}, Reason.PROTOCOL, "instance 0: an object of features or a list of values is needed"),
])
def test_v1_instances_are_refused_naming_what_is_wrong(body, kind, fragment):
    with pytest.raises(BadRequest) as err:
        v1_explain.tabular_request(body, FEATURES, ["probability"])
    assert err.value.kind == kind
    assert fragment in err.value.message


def test_v1_instances_become_one_input_per_feature():
    instance = dict.fromkeys(FEATURES, 1.0) | {"cp": "asymptomatic", "chol": None}
    request = v1_explain.tabular_request({"instances": [instance, list(instance.values())]}, FEATURES,
                                         ["probability", "explanation"])
    inputs = {t.name: t for t in request.inputs}
    assert inputs["cp"].datatype == "BYTES" and inputs["cp"].data == ["asymptomatic", "asymptomatic"]
    assert inputs["chol"].datatype == "FP64" and inputs["chol"].data == [None, None]
    assert [r.name for r in request.request_outputs] == ["probability", "explanation"]
