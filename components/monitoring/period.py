"""The stretch of time a monitoring run looks at, as epoch seconds for :func:`bundle.observations.read`.

A recurring run says "the last N hours"; a one-off look at an incident names its bounds. Both are plain
numbers so that a KFP parameter (no ``None`` there) can carry them: 0 means "not given".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Period:
    since: float | None  # inclusive; None = from the oldest observation kept
    until: float  # exclusive

    def describe(self) -> str:
        start = _stamp(self.since) if self.since is not None else "the oldest kept observation"
        return f"{start} to {_stamp(self.until)}"

    def to_dict(self) -> dict:
        return {"since": self.since, "until": self.until, "text": self.describe()}


def resolve(hours: float = 0.0, since: float = 0.0, until: float = 0.0, now: float | None = None) -> Period:
    """``since``/``until`` (epoch seconds) when given; otherwise ``hours`` back from ``until`` (default now);
    with neither, everything the log still keeps up to ``until``."""
    if hours < 0 or since < 0 or until < 0:
        raise ValueError("hours, since and until must not be negative")
    end = until or (time.time() if now is None else now)
    start = since or (end - hours * 3600.0 if hours else None)
    if start is not None and start >= end:
        raise ValueError(f"the period is empty: since {_stamp(start)} is not before until {_stamp(end)}")
    return Period(start, end)


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
