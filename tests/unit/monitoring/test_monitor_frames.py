"""Logged records into report tables: requests beside their responses, missing halves and codes kept
visible, rows of another model's width left out; reference tables from the bundle's arrays."""

import math

import numpy as np
import pytest

from bundle.drift import KSDriftSettings, ScoreDrift, TabularDriftSettings
from bundle.observations import Record
from components.monitoring.columns import EMBEDDING, MISSING_CATEGORY, SCORE, TABULAR, Columns, columns_of
from components.monitoring.frames import current_frame, reference_frame

pytestmark = pytest.mark.unit

NAN = math.nan
TAB = Columns(TABULAR, ("age", "cp", "chol"), ("cp",), score=True)


def req(seq, eid, *rows):
    return Record(seq, 100.0 + seq, eid, "request", tuple(rows))


def resp(seq, eid, *rows):
    return Record(seq, 100.0 + seq, eid, "response", tuple(rows))


def test_requests_and_responses_are_joined_by_event_id_in_completion_order():
    records = [req(1, "a", (60.0, 4.0, 230.0), (50.0, 1.0, 200.0)), req(2, "b", (40.0, NAN, NAN)),
               resp(3, "b", (0.2,)), resp(4, "a", (0.9,), (0.1,))]
    frame, counts = current_frame(records, TAB)
    assert list(frame.columns) == ["age", "cp", "chol", SCORE]
    assert frame.iloc[0][["age", "cp", SCORE]].tolist() == [40.0, MISSING_CATEGORY, 0.2]
    assert math.isnan(frame.iloc[0]["chol"])  # a missing number stays empty; a missing code is a category
    assert frame[SCORE].tolist() == [0.2, 0.9, 0.1] and frame["age"].tolist() == [40.0, 60.0, 50.0]
    assert (counts.events, counts.rows, counts.skipped) == (2, 3, 0)


def test_a_lone_half_fills_its_own_columns_only():
    frame, counts = current_frame([req(1, "a", (60.0, 2.0, 230.0)), resp(2, "z", (0.7,))], TAB)
    assert counts.events == 2 and len(frame) == 2
    only_request, only_response = frame.iloc[0], frame.iloc[1]
    assert only_request["cp"] == 2.0 and math.isnan(only_request[SCORE])
    assert only_response[SCORE] == 0.7 and only_response[["age", "cp", "chol"]].isna().all()


def test_rows_of_another_width_are_skipped_and_counted():
    frame, counts = current_frame([req(1, "a", (60.0, 2.0, 230.0), (1.0, 2.0)), resp(2, "a", (0.5,), (0.6,))],
                                  Columns(TABULAR, ("age", "cp", "chol"), ("cp",), score=False))
    assert frame.to_numpy().tolist() == [[60.0, 2.0, 230.0]] and counts.skipped == 1


def test_embeddings_come_from_responses_and_no_observations_give_an_empty_table():
    spec = Columns(EMBEDDING, dim=3)
    frame, counts = current_frame([resp(1, "a", (1.0, 2.0, 3.0), (4.0, 5.0, 6.0)), req(2, "q", (9.0,)),
                                   resp(3, "b", (1.0, 2.0))], spec)
    assert list(frame.columns) == ["e0", "e1", "e2"] and frame.to_numpy().tolist() == [[1, 2, 3], [4, 5, 6]]
    assert (counts.events, counts.skipped) == (2, 1)
    empty, none = current_frame([], TAB)
    assert empty.empty and list(empty.columns) == TAB.names and none.events == 0


def test_columns_follow_the_bundle_settings_and_score_needs_its_reference_array():
    settings = TabularDriftSettings(("age", "cp"), ("cp",), score=ScoreDrift("predict_proba", 1))
    assert columns_of(settings, {"x": 0, "score": 0}).names == ["age", "cp", SCORE]
    assert columns_of(settings, {"x": 0}).names == ["age", "cp"]  # an older bundle without scores
    assert columns_of(TabularDriftSettings(("age", "cp"), ("cp",)), {"x": 0, "score": 0}).score is False
    wide = columns_of(KSDriftSettings("embedding", 4), {"embedding": 0})
    assert wide.names == ["e0", "e1", "e2", "e3"] and wide.numerical == wide.names
    assert Columns.from_dict(TAB.to_dict()) == TAB


def test_reference_tables_match_the_settings_shape():
    x = np.array([[60.0, NAN, 200.0], [50.0, 3.0, NAN]])
    frame = reference_frame({"x": x, "score": np.array([[0.3], [0.6]])}, "x", TAB, "score")
    assert frame["cp"].tolist() == [MISSING_CATEGORY, 3.0] and frame[SCORE].tolist() == [0.3, 0.6]
    with pytest.raises(ValueError, match=r"\[n, 4\] is needed"):
        reference_frame({"embedding": np.zeros((5, 3))}, "embedding", Columns(EMBEDDING, dim=4))
    with pytest.raises(ValueError, match="'score' has 1 rows"):
        reference_frame({"x": x, "score": np.array([[0.3]])}, "x", TAB, "score")
