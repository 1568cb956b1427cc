"""The sklearn predictor's compiled plan: scikit-learn's own answers, or no plan at all."""

import asyncio

import joblib
import numpy as np
import pytest
from kserve.protocol.infer_type import InferInput, InferRequest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
from support import sample_bundles

from components.heart_disease import model as training_model
from inference.sklearn_predictor import compiled
from inference.sklearn_predictor.model import SklearnPredictor
from inference.sklearn_predictor.settings import SklearnPredictorSettings

pytestmark = pytest.mark.unit

PARAMS = {"logistic_regression": {"C": 0.5, "l1_ratio": 0.2},
          "random_forest": {"n_estimators": 20, "max_depth": 4, "min_samples_leaf": 2, "max_features": "sqrt"},
          "gradient_boosting": {"n_estimators": 20, "learning_rate": 0.1, "max_depth": 2, "subsample": 1.0}}


def fitted(heart_schema, family: str, n: int = 300):
    x = sample_bundles.heart_rows(heart_schema, n, seed=1)
    y = (np.nan_to_num(x[:, 0] - 55) / 10 + np.nan_to_num(x[:, 2] - 2.5)
         + np.random.default_rng(2).normal(0, 0.7, n) > 0).astype(int)
    return training_model.build(family, PARAMS[family]).fit(x, y), sample_bundles.heart_rows(heart_schema, 200, 9)


@pytest.mark.parametrize("family", training_model.FAMILIES)
def test_the_plan_of_every_family_training_registers_gives_scikit_learns_probabilities(heart_schema, family):
    model, reference = fitted(heart_schema, family)
    fast, why_not = compiled.compile_checked(model, reference)
    assert fast is not None, why_not
    rows = compiled.probes(reference, seed=5)  # other holes and unseen values than the check's
    assert np.isnan(rows).any() and (rows == 987.5).any()
    np.testing.assert_allclose(fast(rows), model.predict_proba(rows), rtol=0, atol=compiled.ATOL)
    one = np.vstack([fast(rows[i:i + 1]) for i in range(20)])
    np.testing.assert_allclose(one, model.predict_proba(rows[:20]), rtol=0, atol=compiled.ATOL)
    assert compiled._final(model[-1]) != model[-1].predict_proba  # the last step is planned too, trees included


def test_a_forest_walks_every_tree_to_the_leaf_scikit_learn_reaches(heart_schema):
    model, reference = fitted(heart_schema, "random_forest")
    x = model[:-1].transform(reference)
    forest = compiled._Forest([tree.tree_ for tree in model[-1].estimators_])
    leaves = forest.leaves(x)
    starts = forest.roots
    for t, tree in enumerate(model[-1].estimators_):
        np.testing.assert_array_equal(leaves[:, t] - starts[t], tree.apply(x.astype(np.float32)))


def test_an_unseen_category_is_all_zeros_as_the_encoder_ignores_it():
    encoder = OneHotEncoder(handle_unknown="ignore").fit(np.array([[1.0], [2.0], [3.0]]))
    model = make_pipeline(encoder, LogisticRegression()).fit(np.array([[1.0], [2.0], [3.0], [1.0]]), [0, 1, 1, 0])
    step = compiled._one_hot(encoder)
    np.testing.assert_array_equal(step(np.array([[2.0], [7.0]])), [[0, 1, 0], [0, 0, 0]])
    fast, why_not = compiled.compile_checked(model, np.array([[1.0], [2.0], [3.0]]))
    assert why_not == ""
    np.testing.assert_allclose(fast(np.array([[7.0]])), model.predict_proba(np.array([[7.0]])), atol=compiled.ATOL)


@pytest.mark.parametrize(("steps", "fragment"), [
    ([("f", FunctionTransformer(np.log1p)), ("m", LogisticRegression())], "no plan for a FunctionTransformer step"),
    ([("e", OneHotEncoder(drop="first")), ("m", LogisticRegression())], "OneHotEncoder with drop='first'"),
    ([("e", OneHotEncoder(handle_unknown="error")), ("m", LogisticRegression())], "handle_unknown='error'"),
    ([("i", SimpleImputer(missing_values=-1.0)), ("m", LogisticRegression())], "missing_values=-1.0"),
])
def test_a_step_without_a_plan_leaves_the_pipeline_to_scikit_learn_naming_the_step(steps, fragment):
    x = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 3.0], [1.0, 1.0]])
    model = Pipeline(steps).fit(x, [0, 1, 1, 0])
    fast, why_not = compiled.compile_checked(model, x)
    assert fast is None and fragment in why_not


def test_a_pipeline_that_refuses_missing_values_keeps_refusing_them_through_scikit_learn():
    from sklearn.preprocessing import StandardScaler

    x = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 3.0], [1.0, 1.0]])
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, [0, 1, 1, 0])
    fast, why_not = compiled.compile_checked(model, x)
    assert fast is None and why_not.startswith("scikit-learn refuses rows the plan would answer (Input X contains NaN")


def test_a_plan_that_differs_from_scikit_learn_is_refused_with_the_difference(heart_schema):
    model, reference = fitted(heart_schema, "logistic_regression")
    honest = compiled.plan(model)
    assert compiled.verify(model, honest, reference) == ""
    why_not = compiled.verify(model, lambda rows: honest(rows) + 1e-6, reference)
    assert "differs from scikit-learn by 1e-06" in why_not


def test_rows_with_an_infinity_are_refused_by_scikit_learn_as_before(heart_schema):
    model, reference = fitted(heart_schema, "logistic_regression")
    fast, _ = compiled.compile_checked(model, reference)
    rows = reference[:2].copy()
    rows[1, 3] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        fast(rows)


def request(rows):
    tensor = InferInput("features", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows, binary_data=False)
    return InferRequest(model_name="heart-disease", infer_inputs=[tensor], request_id="r1")


@pytest.mark.parametrize("compiled_pipeline", [True, False])
def test_the_predictor_answers_through_the_plan_without_calling_scikit_learn(tmp_path, heart_schema, monkeypatch,
                                                                            compiled_pipeline):
    folder = sample_bundles.write_heart_disease(tmp_path / "b", heart_schema, estimator="champion-shaped")
    rows = sample_bundles.heart_rows(heart_schema, 6, seed=4)
    expected = joblib.load(folder / "model.joblib").predict_proba(rows)
    calls = []
    original = Pipeline.predict_proba
    monkeypatch.setattr(Pipeline, "predict_proba", lambda self, x: calls.append(len(x)) or original(self, x))
    model = SklearnPredictor(SklearnPredictorSettings(bundle=str(folder), compiled_pipeline=compiled_pipeline))
    assert model.load()
    calls.clear()  # the load's own: the plan's check, the warm-up

    async def main():
        response, _ = await model(request(rows))
        return response.outputs[0].as_numpy()

    np.testing.assert_allclose(asyncio.run(main()), expected, rtol=0, atol=compiled.ATOL)
    assert calls == ([] if compiled_pipeline else [6])
    model.stop()
