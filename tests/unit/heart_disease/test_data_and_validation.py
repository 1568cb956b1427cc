"""Data tests: what ingest reads, and validation catching each kind of bad data."""

import numpy as np
import pandas as pd
import pytest

from components.common.reports import ValidationFailed
from components.heart_disease import component
from components.heart_disease.data import ingest
from components.heart_disease.schema import FEATURES, SITE, TARGET
from components.heart_disease.validation import validate

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return ingest()


def test_default_source_is_the_920_patient_uci_table(raw):
    assert len(raw) == 920
    assert set(raw[SITE]) == {"Cleveland", "Hungary", "Switzerland", "VA Long Beach"}
    assert raw[TARGET].isin([0, 1]).all()
    assert int(raw[TARGET].sum()) == 509  # num > 0


def test_clean_data_is_coded_and_repaired(raw):
    clean, report = validate(raw)
    assert report.ok
    assert len(clean) == 918  # two exact duplicates dropped
    assert clean[FEATURES].dtypes.eq(float).all()
    assert set(clean["sex"].unique()) == {0.0, 1.0}
    assert set(clean["cp"].unique()) == {1.0, 2.0, 3.0, 4.0}
    assert set(clean["thal"].dropna().unique()) == {3.0, 6.0, 7.0}
    # cholesterol 0 cannot be real: 172 such values become missing, none survive
    assert (clean["chol"] > 0).all() or clean["chol"].isna().any()
    assert not (clean["chol"] == 0).any()
    findings = {(f.check, f.count) for f in report.findings}
    assert ("ranges", 172) in findings
    assert ("duplicates", 2) in findings


def test_missing_required_column_is_a_hard_error(raw):
    clean, report = validate(raw.drop(columns=["thal"]))
    assert not report.ok
    assert "thal" in report.summary()
    assert clean.empty


def test_empty_class_is_a_hard_error(raw):
    _, report = validate(raw[raw[TARGET] == 1])
    assert not report.ok
    assert "class 0 is empty" in report.summary()


def test_impossible_values_become_missing_and_are_counted(raw):
    bad = raw.copy()
    bad.loc[:9, "trestbps"] = 999
    bad.loc[:4, "age"] = -3
    clean, report = validate(bad)
    counts = {f.message.split(":")[0]: f.count for f in report.findings if f.check == "ranges"}
    assert counts["trestbps"] == 11  # ten set here + one zero in the source
    assert counts["age"] == 5
    assert clean["trestbps"].max() <= 260


def test_rows_missing_a_required_value_are_dropped_then_fail_when_too_many(raw):
    some = raw.copy()
    some.loc[:4, "age"] = np.nan
    clean, report = validate(some)
    assert report.ok and len(clean) == 913
    many = raw.copy()
    many.loc[:199, "age"] = np.nan
    _, report = validate(many)
    assert not report.ok
    assert "lack a required value" in report.summary()


def test_unknown_categories_and_unparsable_numbers_are_reported(raw):
    bad = raw.copy().astype({"chol": object})
    bad.loc[:2, "cp"] = "chest pain of the fourth kind"
    bad.loc[:6, "chol"] = "n/a"
    clean, report = validate(bad)
    assert report.ok
    messages = " ".join(f.message for f in report.findings)
    assert "unknown category ['chest pain of the fourth kind']" in messages
    assert "chol: 7 value(s) are not numbers" in messages
    # cp is required: the three rows whose cp is unknown are dropped and counted
    assert len(clean) == 915
    assert any(f.check == "nulls" and f.count == 3 for f in report.findings)


def test_target_leakage_is_a_hard_error(raw):
    leaky = raw.copy()
    leaky["oldpeak"] = leaky[TARGET].astype(float) * 3 + 0.5
    _, report = validate(leaky)
    assert not report.ok
    assert "oldpeak alone predicts the label" in report.summary()


def test_too_few_rows_is_a_hard_error(raw):
    _, report = validate(raw.groupby(TARGET).head(10))
    assert not report.ok
    assert "usable row" in report.summary()


def test_validate_component_fails_the_run_with_a_readable_message(raw, tmp_path):
    class Art:
        def __init__(self, path):
            self.path, self.metadata = str(path), {}

    data = tmp_path / "in.csv"
    raw.drop(columns=["cp"]).to_csv(data, index=False)
    with pytest.raises(ValidationFailed, match="required column\\(s\\) missing: cp"):
        component.validate.python_func(Art(data), Art(tmp_path / "clean.csv"), Art(tmp_path / "r.md"),
                                       Art(tmp_path / "r.html"))
    assert "FAILED" in (tmp_path / "r.md").read_text()
    assert "<table>" in (tmp_path / "r.html").read_text()
