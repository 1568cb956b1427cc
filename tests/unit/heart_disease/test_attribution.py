"""The evaluate step's SHAP values: every model column credited to its feature, the same values the
served explanation gives for the same patients (two implementations, one answer), and a summary plot."""

import numpy as np
import pytest
from support.uci_models import FAMILIES, uci_rows

from components.heart_disease import attribution
from components.heart_disease import model as heart_model
from components.heart_disease.schema import FEATURES, TITLES
from inference.sklearn_predictor.explain import Explainer

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def uci():
    return uci_rows()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_training_and_serving_attribute_the_same_values(uci, family):
    x, y = uci
    pipeline = heart_model.build(family, FAMILIES[family]).fit(x, y)
    owners = attribution.column_features(pipeline[:-1])
    assert len(owners) == pipeline[:-1].transform(x[:1]).shape[1]
    assert set(owners) == set(range(len(FEATURES)))
    background, rows = x[:200], np.concatenate([x[200:220], x[np.isnan(x).any(axis=1)][:20]])
    ours = attribution.shap_values(pipeline, background, rows, seed=0)
    served, _ = Explainer(pipeline, background, max_background=200, seed=0).explain(rows)
    np.testing.assert_allclose(ours, served, atol=1e-9)
    assert np.abs(ours).max() > 0.01


def test_the_summary_plot_is_a_png(uci):
    x, y = uci
    pipeline = heart_model.build("logistic_regression", FAMILIES["logistic_regression"]).fit(x, y)
    png = attribution.summary_png(attribution.shap_values(pipeline, x[:150], x[150:250]), x[150:250], TITLES)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
