"""Tables for the report: the bundle's drift reference and the logged observations of a period, with
the same columns (see :mod:`components.monitoring.columns`).

A logged request and its response share an event id (:func:`bundle.observations.paired`): their rows
are joined side by side, features beside the score. A half that was never logged (the sidecar lost
nothing, but a sender may have) leaves its columns empty rather than dropping the other half.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bundle.observations import Record, paired
from components.monitoring.columns import EMBEDDING, MISSING_CATEGORY, SCORE, Columns


@dataclass(frozen=True)
class Counts:
    events: int  # request/response pairs (or lone halves) read
    rows: int  # table rows built from them
    skipped: int  # logged rows whose width does not match this bundle's (logged for another model)

    def to_dict(self) -> dict:
        return {"events": self.events, "rows": self.rows, "skipped": self.skipped}


def encode_categorical(frame: pd.DataFrame, categorical: Iterable[str]) -> pd.DataFrame:
    """Missing categorical codes become a category of their own: missingness differs by site (``ca``,
    ``thal``) and is part of what shifts."""
    out = frame.copy()
    for name in categorical:
        out[name] = out[name].fillna(MISSING_CATEGORY)
    return out


def reference_frame(reference: dict[str, np.ndarray], array: str, columns: Columns,
                    score_array: str | None = None) -> pd.DataFrame:
    """The reference rows of ``drift/reference.npz`` as a table with ``columns.names``."""
    x = np.asarray(reference[array], dtype=np.float64)
    if columns.kind == EMBEDDING:
        if x.ndim != 2 or x.shape[1] != columns.dim:
            raise ValueError(f"reference '{array}' is {x.shape}; [n, {columns.dim}] is needed")
        return pd.DataFrame(x, columns=columns.names)
    if x.ndim != 2 or x.shape[1] != len(columns.features):
        raise ValueError(f"reference '{array}' is {x.shape}; [n, {len(columns.features)}] is needed")
    frame = pd.DataFrame(x, columns=list(columns.features))
    if columns.score:
        scores = np.asarray(reference[score_array], dtype=np.float64).reshape(-1)
        if len(scores) != len(frame):
            raise ValueError(f"reference '{score_array}' has {len(scores)} rows, '{array}' {len(frame)}")
        frame[SCORE] = scores
    return encode_categorical(frame, columns.categorical)


def current_frame(records: Iterable[Record], columns: Columns) -> tuple[pd.DataFrame, Counts]:
    """The logged rows of ``records`` as a table with ``columns.names``."""
    if columns.kind == EMBEDDING:
        return _embedding_rows(records, columns)
    return _tabular_rows(records, columns)


def _tabular_rows(records: Iterable[Record], columns: Columns) -> tuple[pd.DataFrame, Counts]:
    width = len(columns.features)
    parts: list[pd.DataFrame] = []
    events = skipped = 0
    for request, response in paired(iter(records)):
        events += 1
        x = _rows(request, width)
        s = _rows(response, 1) if columns.score else None
        skipped += _bad(request, width) + (_bad(response, 1) if columns.score else 0)
        if x is not None:
            part = encode_categorical(pd.DataFrame(x, columns=list(columns.features)), columns.categorical)
            if columns.score:
                part[SCORE] = s[:, 0] if s is not None and len(s) == len(x) else np.nan
            parts.append(part)
        if s is not None and (x is None or len(s) != len(x)):  # a score with no matching request rows
            parts.append(pd.DataFrame({SCORE: s[:, 0]}))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    frame = frame.reindex(columns=columns.names).astype(np.float64)
    return frame, Counts(events, len(frame), skipped)


def _embedding_rows(records: Iterable[Record], columns: Columns) -> tuple[pd.DataFrame, Counts]:
    rows: list[np.ndarray] = []
    events = skipped = 0
    for _, response in paired(iter(records)):
        if response is None:
            continue  # requests are not logged for this workload; a stray one carries nothing to test
        events += 1
        skipped += _bad(response, columns.dim)
        e = _rows(response, columns.dim)
        if e is not None:
            rows.append(e)
    x = np.concatenate(rows) if rows else np.empty((0, columns.dim))
    return pd.DataFrame(x, columns=columns.names), Counts(events, len(x), skipped)


def _rows(record: Record | None, width: int) -> np.ndarray | None:
    """The record's rows of the expected width, or None."""
    if record is None or not record.rows:
        return None
    good = [row for row in record.rows if len(row) == width]
    return np.asarray(good, dtype=np.float64) if good else None


def _bad(record: Record | None, width: int) -> int:
    return 0 if record is None else sum(len(row) != width for row in record.rows)
