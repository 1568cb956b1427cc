"""The sidecar's memory of events taken lately: a retry is known, the oldest are forgotten past the bound,
and the memory at the bound is small."""

import tracemalloc
import uuid

import pytest

from inference.drift.recent import RecentEvents

pytestmark = pytest.mark.unit


def test_a_retry_is_known_by_id_and_type_alone():
    recent = RecentEvents(10)
    assert recent.add("a", "request") is True
    assert recent.add("a", "request") is False
    assert ("a", "request") in recent
    assert ("a", "response") not in recent and recent.add("a", "response") is True
    # the type's NUL separator: without it these two would be the same bytes
    assert recent.add("request", "response") is True and ("responserequest", "") not in recent
    assert len(recent) == 3


def test_past_the_limit_the_oldest_is_forgotten_first():
    recent = RecentEvents(3)
    for name in "abcd":
        recent.add(name, "response")
    assert len(recent) == 3
    assert [(name, "response") in recent for name in "abcd"] == [False, True, True, True]
    assert recent.add("a", "response") is True  # forgotten, so taken again
    assert ("b", "response") not in recent


def test_a_bound_below_one_is_refused():
    with pytest.raises(ValueError, match="at least one event, not 0"):
        RecentEvents(0)


def test_at_its_bound_the_memory_stays_near_a_hundred_bytes_an_event():
    ids = [str(uuid.uuid4()) for _ in range(60_000)]
    tracemalloc.start()
    try:
        recent = RecentEvents(50_000)
        for event_id in ids:
            recent.add(event_id, "request")
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(recent) == 50_000
    assert held / 50_000 < 130  # bytes an event; a tuple of the two strings in an ordered dict took about 280
