"""Split and training logic, on the real data kept small."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from components.heart_disease.data import ingest
from components.heart_disease.schema import FEATURES, SITE, TARGET
from components.heart_disease.split import parse_sites, split
from components.heart_disease.training import params_of, tune
from components.heart_disease.validation import validate

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def clean():
    return validate(ingest())[0]


def test_split_is_stratified_and_seeded(clean):
    train, test = split(clean, 0.2, seed=7)
    again, _ = split(clean, 0.2, seed=7)
    assert len(test) == round(0.2 * len(clean))
    assert abs(train[TARGET].mean() - test[TARGET].mean()) < 0.01
    assert train.equals(again)
    assert not split(clean, 0.2, seed=8)[0].equals(train)


def test_site_holdout_puts_whole_sites_in_test(clean):
    train, test = split(clean, holdout_sites=parse_sites("Hungary, Switzerland"))
    assert set(test[SITE]) == {"Hungary", "Switzerland"}
    assert not set(train[SITE]) & {"Hungary", "Switzerland"}
    with pytest.raises(ValueError, match="not in the data"):
        split(clean, holdout_sites=["Atlantis"])
    with pytest.raises(ValueError, match="test_size"):
        split(clean, test_size=1.5)


def test_tune_finds_a_useful_model_and_resumes_the_study(clean, tmp_path, capsys):
    train, test = split(clean, 0.2, seed=1)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    result = tune(train, n_trials=4, seed=1, storage=storage, cv_folds=3)
    assert result.n_trials == 4
    assert 0.8 < result.cv_roc_auc <= 1.0
    p = result.pipeline.predict_proba(test[FEATURES].to_numpy(float))[:, 1]
    assert roc_auc_score(test[TARGET], p) > 0.85
    # missing values at prediction time are imputed by the same pipeline
    row = test[FEATURES].to_numpy(float)[:1].copy()
    row[0, [3, 4, 10, 11, 12]] = np.nan
    assert 0.0 <= result.pipeline.predict_proba(row)[0, 1] <= 1.0

    again = tune(train, n_trials=6, seed=1, storage=storage, cv_folds=3)
    assert again.study_name == result.study_name
    assert again.n_trials == 6
    assert "4 finished trial(s) found, running 2 more" in capsys.readouterr().out


def test_params_of_strips_family_prefixes(clean, tmp_path):
    train, _ = split(clean, 0.2, seed=2)
    result = tune(train, n_trials=2, seed=2, storage=f"sqlite:///{tmp_path / 's.db'}", cv_folds=3)
    import optuna

    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{tmp_path / 's.db'}")
    family, params = params_of(study.best_trial)
    assert family == result.family and params == result.params
    assert all("_" not in k[:3] or not k.startswith(("lr_", "rf_", "gb_")) for k in params)
