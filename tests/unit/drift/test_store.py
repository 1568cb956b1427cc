"""The observation log: sequence numbers that survive restarts and crashes, private files, and retention that
never removes what the detector has not yet used."""

import os
import stat

import pytest

from bundle import observations
from bundle.observations import SEGMENTS
from inference.drift.store import ObservationStore, StoreFull

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
ROW = ((63.0, 1.0, 145.0),)
LINE = len(observations.Record(1, NOW, "e-1", "request", ROW).to_line())  # every test record has this size


def open_store(folder, max_bytes=1 << 20, max_age_s=3600.0, segment_bytes=1 << 20):
    return ObservationStore(folder, max_bytes=max_bytes, max_age_s=max_age_s, segment_bytes=segment_bytes)


def fill(store, first, count, now=NOW):
    return [store.append(f"e-{i}", "request", ROW, now).seq for i in range(first, first + count)]


def test_seq_continues_across_reopen_and_records_read_back_in_order(tmp_path):
    store = open_store(tmp_path)
    assert fill(store, 1, 3) == [1, 2, 3]
    store.close()
    again = open_store(tmp_path)
    assert again.next_seq == 4
    assert fill(again, 4, 2) == [4, 5]
    again.close()
    got = list(observations.read(tmp_path))
    assert [(r.seq, r.id, r.rows) for r in got] == [(i, f"e-{i}", ROW) for i in range(1, 6)]


def test_a_half_written_last_line_is_cut_at_reopen_and_its_seq_is_reused(tmp_path):
    store = open_store(tmp_path)
    fill(store, 1, 2)
    store.close()
    segment = observations.segments(tmp_path)[-1]
    whole = segment.read_bytes()
    with segment.open("ab") as handle:  # kill -9 in the middle of write(): never acknowledged
        handle.write(b'{"seq":3,"t":1800000000.0,"id":"e-3","type":"req')
    again = open_store(tmp_path)
    assert segment.read_bytes() == whole
    assert again.bytes == len(whole)
    assert again.next_seq == 3
    assert again.append("e-3", "request", ROW, NOW).seq == 3
    again.close()
    assert [r.seq for r in observations.read(tmp_path)] == [1, 2, 3]


def test_a_segment_holding_only_a_half_line_restarts_at_its_own_number(tmp_path):
    store = open_store(tmp_path, segment_bytes=2 * LINE)
    fill(store, 1, 3)  # segments 1 (two lines) and 3 (one line)
    store.close()
    last = observations.segments(tmp_path)[-1]
    assert last.name == observations.segment_name(3)
    last.write_bytes(b'{"seq":3,"t":1')
    again = open_store(tmp_path, segment_bytes=2 * LINE)
    assert again.next_seq == 3 and last.read_bytes() == b""
    again.close()


def test_files_are_private_to_the_service_user(tmp_path):
    log_dir = tmp_path / "drift" / "heart-disease"
    store = open_store(log_dir)
    fill(store, 1, 1)
    store.close()
    assert stat.S_IMODE(os.stat(log_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(log_dir / SEGMENTS).st_mode) == 0o700
    assert [stat.S_IMODE(p.stat().st_mode) for p in observations.segments(log_dir)] == [0o600]


def test_segments_roll_over_at_segment_bytes_and_are_named_by_their_first_seq(tmp_path):
    store = open_store(tmp_path, segment_bytes=2 * LINE)
    fill(store, 1, 5)
    store.close()
    assert [p.name for p in observations.segments(tmp_path)] == [observations.segment_name(s) for s in (1, 3, 5)]


def age(path, seconds):
    os.utime(path, (NOW - seconds, NOW - seconds))


def test_retention_removes_old_segments_only_below_protected_from(tmp_path):
    store = open_store(tmp_path, max_age_s=100.0, segment_bytes=2 * LINE)
    fill(store, 1, 6)  # segments 1, 3, 5
    for path in observations.segments(tmp_path):
        age(path, 1000)
    store.protected_from = 4  # seq 4 is not yet tested: segment 3 (seq 3-4) stays
    store.enforce_retention(NOW)
    assert [p.name for p in observations.segments(tmp_path)] == [observations.segment_name(s) for s in (3, 5)]
    assert store.bytes == 4 * LINE
    store.protected_from = 7  # all tested, and no write for longer than max_age: the segment being written goes too
    store.enforce_retention(NOW)
    assert observations.segments(tmp_path) == [] and store.bytes == 0
    assert fill(store, 7, 1) == [7]  # the next record opens a new segment
    assert [p.name for p in observations.segments(tmp_path)] == [observations.segment_name(7)]
    store.close()


def test_the_segment_being_written_stays_while_it_holds_untested_rows_or_is_young(tmp_path):
    store = open_store(tmp_path, max_age_s=100.0)
    fill(store, 1, 3)
    age(observations.segments(tmp_path)[0], 1000)
    store.protected_from = 3  # seq 3 not yet tested
    store.enforce_retention(NOW)
    assert len(observations.segments(tmp_path)) == 1
    store.protected_from = 4
    store.enforce_retention(NOW - 1000 + 50)  # all tested, but written 50 s ago
    assert len(observations.segments(tmp_path)) == 1
    store.close()


def test_at_low_traffic_a_segment_is_closed_after_an_eighth_of_max_age_so_no_row_outlives_it_by_more(tmp_path):
    store = open_store(tmp_path, max_age_s=800.0)  # segments close after 100 s, however few bytes they hold
    seqs = [store.append(f"e-{k}", "request", ROW, NOW + 30 * k).seq for k in range(10)]  # one event per 30 s
    assert [p.name for p in observations.segments(tmp_path)] == [observations.segment_name(s) for s in (1, 5, 9)]
    for path, last_write in zip(observations.segments(tmp_path), (NOW + 90, NOW + 210, NOW + 270), strict=True):
        os.utime(path, (last_write, last_write))
    store.protected_from = seqs[-1] + 1
    store.enforce_retention(NOW + 90 + 800 + 1)  # the first segment's last row is past max_age: it goes
    assert [p.name for p in observations.segments(tmp_path)] == [observations.segment_name(s) for s in (5, 9)]
    store.close()


def test_retention_keeps_young_segments_while_the_log_is_under_its_size(tmp_path):
    store = open_store(tmp_path, max_age_s=100.0, segment_bytes=2 * LINE)
    fill(store, 1, 6)
    for path in observations.segments(tmp_path):
        age(path, 50)
    store.protected_from = 100
    store.enforce_retention(NOW)
    assert len(observations.segments(tmp_path)) == 3
    store.close()


def test_retention_removes_tested_segments_oldest_first_when_over_size(tmp_path):
    store = open_store(tmp_path, max_bytes=5 * LINE, max_age_s=1e12, segment_bytes=2 * LINE)
    fill(store, 1, 5)  # 5 lines: at the limit
    store.protected_from = 6
    assert store.append("e-6", "request", ROW, NOW).seq == 6  # the oldest tested segment makes room
    assert [p.name for p in observations.segments(tmp_path)] == [observations.segment_name(s) for s in (3, 5)]
    assert store.bytes == 4 * LINE
    store.close()


def test_a_full_log_of_untested_observations_refuses_and_writes_nothing(tmp_path):
    store = open_store(tmp_path, max_bytes=4 * LINE, max_age_s=1e12, segment_bytes=2 * LINE)
    fill(store, 1, 4)
    store.protected_from = 3  # seq 3 on untested: segment 1 may go, segments 3 and 5 may not
    assert store.append("e-5", "request", ROW, NOW).seq == 5  # room made by removing segment 1
    assert store.append("e-6", "request", ROW, NOW).seq == 6
    before = {p.name: p.read_bytes() for p in observations.segments(tmp_path)}
    assert list(before) == [observations.segment_name(s) for s in (3, 5)]
    with pytest.raises(StoreFull):
        store.append("e-7", "request", ROW, NOW)
    assert {p.name: p.read_bytes() for p in observations.segments(tmp_path)} == before
    assert store.next_seq == 7 and store.bytes == 4 * LINE
    store.protected_from = 5  # the detector caught up: the log accepts again
    assert store.append("e-7", "request", ROW, NOW).seq == 7
    assert [r.seq for r in observations.read(tmp_path)] == [5, 6, 7]
    store.close()


def test_the_verdict_log_holds_as_many_latest_verdicts_as_a_caller_may_ask_for(tmp_path):
    from inference.drift.verdicts import MAX_LATEST, VerdictLog
    from inference.drift.window import Checkpoint

    log = VerdictLog(tmp_path / "v")
    for k in range(MAX_LATEST + 50):
        log.append({"window": k, "checkpoint": Checkpoint(consumed_through=k).to_dict()})
    log.close()
    again = VerdictLog(tmp_path / "v")  # as a restarted sidecar reads it back
    assert again.count == MAX_LATEST + 50 and len(again.latest) == MAX_LATEST == 200
    assert [v["window"] for v in again.latest] == list(range(50, MAX_LATEST + 50))
    assert again.checkpoint.consumed_through == MAX_LATEST + 49
    again.close()


class Fsyncs:
    """``os.fsync`` for one test: records which file each call synced and how far the store had written."""

    def __init__(self, monkeypatch, store=None):
        self.calls: list[tuple[str, int]] = []
        self.store = store
        monkeypatch.setattr(os, "fsync", self)

    def __call__(self, fd):
        self.calls.append((os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[1],
                           self.store.next_seq - 1 if self.store else 0))


def test_with_fsync_an_append_only_writes_and_one_sync_makes_every_earlier_record_durable(tmp_path, monkeypatch):
    store = ObservationStore(tmp_path, max_bytes=1 << 20, max_age_s=3600.0, fsync=True)
    fsyncs = Fsyncs(monkeypatch, store)
    fill(store, 1, 5)
    assert fsyncs.calls == [] and store.synced_seq == 0  # written (a kill -9 keeps them), not yet durable
    assert store.sync() == 5 and store.synced_seq == 5
    assert store.sync() == 5  # nothing new: no second fsync
    assert fsyncs.calls == [("00000000000000000001.jsonl", 5)]
    store.close()


def test_with_fsync_a_segment_is_synced_as_it_is_closed_so_a_sync_covers_records_across_segments(tmp_path,
                                                                                                 monkeypatch):
    store = ObservationStore(tmp_path, max_bytes=1 << 20, max_age_s=3600.0, segment_bytes=3 * LINE, fsync=True)
    fsyncs = Fsyncs(monkeypatch, store)
    fill(store, 1, 4)  # 3 lines fill the first segment; the 4th opens the second
    assert fsyncs.calls == [("00000000000000000001.jsonl", 3)] and store.synced_seq == 3
    assert store.sync() == 4
    assert fsyncs.calls[-1] == ("00000000000000000004.jsonl", 4)
    store.close()
    assert len(fsyncs.calls) == 2  # closing a synced segment needs no fsync


def test_without_fsync_sync_calls_no_fsync(tmp_path, monkeypatch):
    store = open_store(tmp_path)
    fsyncs = Fsyncs(monkeypatch)
    fill(store, 1, 3)
    assert store.sync() == 3 and fsyncs.calls == []
    store.close()
