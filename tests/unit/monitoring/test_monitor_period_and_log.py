"""The period a monitoring run reads and the records of the observation log that fall in it."""

import pytest

from bundle.observations import SEGMENTS, Record, segment_name
from components.monitoring import log
from components.monitoring.period import resolve

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0


def test_hours_count_back_from_now_or_from_until():
    assert resolve(hours=2, now=NOW).since == NOW - 7200 and resolve(hours=2, now=NOW).until == NOW
    p = resolve(hours=1, until=NOW - 100, now=NOW)
    assert (p.since, p.until) == (NOW - 3700, NOW - 100)


def test_explicit_bounds_win_over_hours_and_no_bounds_mean_everything_kept():
    p = resolve(hours=5, since=NOW - 60, until=NOW - 10, now=NOW)
    assert (p.since, p.until) == (NOW - 60, NOW - 10)
    everything = resolve(now=NOW)
    assert everything.since is None and everything.until == NOW
    assert "oldest kept observation" in everything.describe()
    assert resolve(hours=1, now=NOW).describe() == "2027-01-15 07:00:00 UTC to 2027-01-15 08:00:00 UTC"


@pytest.mark.parametrize("kwargs, message", [({"since": NOW, "until": NOW - 1}, "the period is empty"),
                                             ({"hours": -1}, "must not be negative")])
def test_impossible_periods_are_refused_with_a_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resolve(**kwargs, now=NOW)


def write_log(folder, records, per_segment=3):
    segments = folder / SEGMENTS
    segments.mkdir(parents=True)
    for i in range(0, len(records), per_segment):
        chunk = records[i:i + per_segment]
        (segments / segment_name(chunk[0].seq)).write_text("".join(r.to_line() for r in chunk))


def test_records_in_a_period_come_from_every_segment_in_order(tmp_path):
    records = [Record(i + 1, NOW - 100 + 10 * i, f"e{i}", "request", ((float(i),),)) for i in range(10)]
    write_log(tmp_path, records)
    got = log.records_in(tmp_path, resolve(since=NOW - 75, until=NOW - 25, now=NOW))
    assert [r.seq for r in got] == [4, 5, 6, 7, 8]  # t = NOW-70 … NOW-30; until is exclusive
    assert log.absence(tmp_path) is None


def test_a_missing_log_says_why_and_the_default_folder_is_under_home(tmp_path, clinops_home):
    assert log.records_in(tmp_path / "nowhere", resolve(now=NOW)) == []
    assert "has no segments" in log.absence(tmp_path / "nowhere")
    assert log.resolve_log_dir("pneumonia") == clinops_home.resolve() / "drift" / "pneumonia"
    assert log.resolve_log_dir("pneumonia", str(tmp_path)) == tmp_path
