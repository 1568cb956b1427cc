"""The Evidently report's decisions on synthetic data: a shifted column drifts and the others do not, an
in-distribution period does not drift, an empty one says so; wide embeddings are reduced on the
reference's principal components."""

import numpy as np
import pandas as pd
import pytest

from components.monitoring.reduce import reduce_embedding
from components.monitoring.render import empty_html, markdown
from components.monitoring.report import Summary, compare

pytestmark = pytest.mark.unit


def tables(n_ref=300, n_cur=120, seed=0):
    rng = np.random.default_rng(seed)

    def draw(n):
        return pd.DataFrame({"age": rng.normal(55, 9, n).round(), "chol": rng.normal(240, 40, n),
                             "cp": rng.choice([1.0, 2.0, 3.0, 4.0], n, p=[0.1, 0.2, 0.3, 0.4]),
                             "score": rng.beta(2, 3, n)})
    return draw(n_ref), draw(n_cur)


def summary_for(reference, current, drift_share=0.5):
    return Summary("heart-disease", "m v1", {"text": "the period"}, len(current), len(reference),
                   drift_share=drift_share)


def test_an_in_distribution_period_does_not_drift():
    reference, current = tables()
    summary = summary_for(reference, current)
    assert compare(summary, reference, current, ["cp"]) is not None
    assert summary.drifted == [] and summary.drift is False and summary.drifted_share == 0.0
    kinds = {c.column: (c.kind, c.method) for c in summary.columns}
    assert kinds["cp"] == ("categorical", "chi-square p_value") and kinds["age"] == ("numerical", "K-S p_value")
    assert all(c.score > c.threshold for c in summary.columns)  # p-values above the level


def test_shifted_columns_drift_and_the_share_decides_the_period():
    reference, current = tables()
    current = current.assign(age=current["age"] + 12, cp=4.0)
    half = summary_for(reference, current, drift_share=0.5)
    compare(half, reference, current, ["cp"])
    assert sorted(half.drifted) == ["age", "cp"] and half.drifted_share == 0.5 and half.drift is True
    assert half.verdict().startswith("Drift: 2 of 4 columns drifted (50% ≥ 50%)")
    strict = summary_for(reference, current, drift_share=0.75)
    compare(strict, reference, current, ["cp"])
    assert sorted(strict.drifted) == ["age", "cp"] and strict.drift is False
    assert strict.verdict().startswith("No drift: 2 of 4 columns drifted (50% < 75%): ")


def test_a_column_without_values_is_left_out_and_named():
    reference, current = tables()
    current["score"] = np.nan  # responses not logged in this period
    summary = summary_for(reference, current)
    compare(summary, reference, current, ["cp"])
    assert [c.column for c in summary.columns] == ["age", "chol", "cp"]
    assert summary.notes == ["score: no values in the period or the reference; not compared."]


def test_markdown_has_the_verdict_the_table_and_the_counts():
    reference, current = tables()
    current = current.assign(chol=current["chol"] * 1.5)
    summary = summary_for(reference, current, drift_share=0.25)
    compare(summary, reference, current, ["cp"])
    text = markdown(summary)
    assert "**Drift: 1 of 4 columns drifted (25% ≥ 25%): chol.**" in text
    assert "| rows: period / reference | 120 / 300 |" in text and "| period | the period |" in text
    chol = next(line for line in text.splitlines() if line.startswith("| chol |"))
    assert "| numerical | K-S p_value |" in chol and "| **yes** |" in chol
    assert next(line for line in text.splitlines() if line.startswith("| cp |")).count("| no |") == 1
    assert Summary.from_dict(summary.to_dict()).to_dict() == summary.to_dict()


def test_an_empty_period_gives_a_clear_message_and_no_evidently_run():
    reference, _ = tables()
    empty = reference.iloc[:0]
    summary = summary_for(reference, empty)
    assert compare(summary, reference, empty, ["cp"]) is None
    assert summary.drift is False and summary.columns == []
    assert summary.verdict() == "No observations for heart-disease from the period: nothing to compare."
    assert "No observations for heart-disease" in empty_html(summary) and "No observations" in markdown(summary)


def test_wide_embeddings_are_projected_on_reference_components_and_a_shift_shows():
    rng = np.random.default_rng(1)
    basis = rng.normal(size=(4, 64))
    reference = pd.DataFrame(rng.normal(size=(300, 4)) @ basis + rng.normal(0, 0.05, (300, 64)))
    current = pd.DataFrame(rng.normal(size=(100, 4)) @ basis + rng.normal(0, 0.05, (100, 64)))
    reduced = reduce_embedding(reference, current, max_dims=4)
    assert list(reduced.current.columns) == ["pc1", "pc2", "pc3", "pc4"] and len(reduced.reference) == 300
    assert "64 dimensions projected on the first 4 principal components" in reduced.note
    assert "(100% of its variance)" in reduced.note
    calm = summary_for(reduced.reference, reduced.current)
    compare(calm, reduced.reference, reduced.current, [])
    assert calm.drifted == []
    moved = reduce_embedding(reference, current + 0.8 * basis[0], max_dims=4)
    shifted = summary_for(moved.reference, moved.current)
    compare(shifted, moved.reference, moved.current, [])
    assert shifted.drifted and shifted.drift is True
    narrow = reduce_embedding(reference.iloc[:, :8], current.iloc[:, :8], max_dims=20)
    assert narrow.reference.shape[1] == 8 and "all 8 dimensions compared as they are" in narrow.note
