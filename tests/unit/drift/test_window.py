"""From logged records to windows: request/response pairing, pair timeout, size/time/sliding windows, and a
restart from a window's checkpoint that closes exactly the windows an uninterrupted run closes."""

import numpy as np
import pytest

from bundle.drift import Window
from bundle.observations import REQUEST, RESPONSE, Record
from inference.drift.window import Checkpoint, Windower

pytestmark = pytest.mark.unit

BOTH = frozenset({REQUEST, RESPONSE})


def req(seq, event_id, n=1, t=0.0, value=1.0):
    return Record(seq, t, event_id, REQUEST, tuple((value, float(i)) for i in range(n)))


def resp(seq, event_id, n=1, t=0.0):
    return Record(seq, t, event_id, RESPONSE, tuple((0.5,) for _ in range(n)))


def summary(windows):
    return [([(o.id, o.rows) for o in w.observations], w.reason) for w in windows]


def test_a_request_and_its_response_pair_by_id_in_either_order():
    w = Windower(Window(size=10), BOTH)
    assert w.add(req(1, "a", n=2, value=7.0)) == [] and w.current == []
    assert w.add(resp(2, "b")) == [] and list(w.pending) == ["a", "b"]
    w.add(resp(3, "a", n=2))
    w.add(req(4, "b", value=9.0))
    assert [(o.id, o.first_seq, o.done_seq, o.rows) for o in w.current] == [("a", 1, 3, 2), ("b", 2, 4, 1)]
    assert w.current[0].inputs.tolist() == [[7.0, 0.0], [7.0, 1.0]] and w.current[0].outputs.tolist() == [[0.5]] * 2
    assert w.current[1].inputs.tolist() == [[9.0, 0.0]] and w.current[1].outputs.tolist() == [[0.5]]
    assert not w.pending and w.rows == 3


def test_halves_that_disagree_on_rows_keep_the_inputs_only():
    w = Windower(Window(size=10), BOTH)
    w.add(req(1, "a", n=3))
    w.add(resp(2, "a", n=2))
    assert w.current[0].rows == 3 and w.current[0].outputs is None


def test_one_needed_half_is_an_observation_at_once_and_the_other_is_ignored():
    w = Windower(Window(size=10), frozenset({RESPONSE}))
    assert w.add(req(1, "a")) == [] and not w.pending and not w.current
    w.add(resp(2, "a", n=4))
    assert [(o.id, o.rows, o.inputs) for o in w.current] == [("a", 4, None)]


def test_a_request_alone_becomes_an_observation_after_the_pair_timeout():
    w = Windower(Window(size=10), BOTH, pair_timeout_s=30.0)
    w.add(req(1, "failed", n=2, t=100.0))
    w.add(req(2, "later", t=120.0))
    assert w.tick(129.9) == [] and w.current == []
    w.tick(130.0)
    assert [(o.id, o.rows, o.outputs) for o in w.current] == [("failed", 2, None)]
    assert list(w.pending) == ["later"]


def test_timed_out_halves_can_close_a_size_window():
    w = Windower(Window(size=2), BOTH, pair_timeout_s=5.0)
    for seq, event_id in enumerate("abc", start=1):
        w.add(req(seq, event_id, t=0.0))
    closed = w.tick(10.0)
    assert summary(closed) == [([("a", 1), ("b", 1)], "size")]
    assert [o.id for o in w.current] == ["c"] and not w.pending


def test_size_windows_close_with_the_rows_that_reached_the_size():
    w = Windower(Window(size=5), frozenset({REQUEST}))
    closed = [c for seq, n in enumerate([2, 2, 2, 1, 1, 1, 1], start=1) for c in w.add(req(seq, f"e{seq}", n=n))]
    assert [(c.rows, [o.id for o in c.observations], c.reason) for c in closed] == [
        (6, ["e1", "e2", "e3"], "size")]
    assert w.rows == 4 and w.current[0].id == "e4"
    window = closed[0]
    assert (window.first_seq, window.last_seq) == (1, 3)
    assert window.present("inputs").shape == (6, 2) and window.present("outputs").shape == (0, 0)
    assert window.checkpoint == Checkpoint(consumed_through=3, retained=(), pending=(), replay_from=4)


def test_time_windows_close_after_their_seconds_only_with_min_rows():
    w = Windower(Window(size=100, seconds=10.0), frozenset({REQUEST}), min_rows=3)
    w.add(req(1, "a", t=0.0))
    w.add(req(2, "b", t=5.0))
    assert w.tick(60.0) == []  # two rows: too few to test, the window waits
    w.add(req(3, "c", t=61.0))
    assert w.tick(9.0) == []  # the window's first observation is not yet 10 s old
    closed = w.tick(60.0)
    assert summary(closed) == [([("a", 1), ("b", 1), ("c", 1)], "time")]
    assert w.current == [] and w.tick(1000.0) == []


def test_sliding_windows_keep_the_newest_size_minus_slide_rows():
    w = Windower(Window(size=4, slide=2), frozenset({REQUEST}))
    closed = [c for seq in range(1, 9) for c in w.add(req(seq, f"e{seq}"))]
    assert [[o.id for o in c.observations] for c in closed] == [
        ["e1", "e2", "e3", "e4"], ["e3", "e4", "e5", "e6"], ["e5", "e6", "e7", "e8"]]
    assert [o.id for o in w.current] == ["e7", "e8"]
    assert closed[0].checkpoint == Checkpoint(consumed_through=4, retained=("e3", "e4"), pending=(), replay_from=3)


# -- checkpoint / restore ------------------------------------------------------------------------------------
def logged_stream(events: int, seed: int, max_rows: int = 3, lag: int = 4) -> list[Record]:
    """A log as the sidecar writes it: a request and its response per event, responses arriving up to
    ``lag`` events late (so a checkpoint often falls between the halves), sometimes before the request."""
    rng = np.random.default_rng(seed)
    placed = []
    for k in range(events):
        n = int(rng.integers(1, max_rows + 1))
        first, second = (REQUEST, RESPONSE) if rng.random() < 0.8 else (RESPONSE, REQUEST)
        placed.append((2 * k, first, f"e{k}", n))
        placed.append((2 * k + 1 + 2 * int(rng.integers(0, lag + 1)), second, f"e{k}", n))
    placed.sort(key=lambda p: (p[0], p[1] == RESPONSE))
    return [Record(seq, float(seq), event_id, kind, tuple((float(seq), float(i)) for i in range(n)))
            for seq, (_, kind, event_id, n) in enumerate(placed, start=1)]


def make(window, needs=BOTH):
    return Windower(window, needs, pair_timeout_s=1e9, min_rows=1)


def assert_restart_from_every_checkpoint_closes_the_same_windows(records, window, needs=BOTH):
    uninterrupted = make(window, needs)
    closed = [c for r in records for c in uninterrupted.add(r)]
    assert len(closed) >= 3, "the stream must close several windows"
    assert any(c.checkpoint.pending for c in closed), "some checkpoint must fall between a request and its response"
    for k, window_k in enumerate(closed):
        checkpoint = Checkpoint.from_dict(window_k.checkpoint.to_dict())  # as the verdict log reads it back
        restarted = make(window, needs)
        restarted.restore(checkpoint, [r for r in records
                                       if checkpoint.replay_from <= r.seq <= checkpoint.consumed_through])
        assert restarted.rows == sum(o.rows for o in window_k.observations if o.id in checkpoint.retained)
        assert list(restarted.pending) == list(checkpoint.pending)
        after = [c for r in records if r.seq > checkpoint.consumed_through for c in restarted.add(r)]
        assert summary(after) == summary(closed[k + 1:]), f"restart after window {k}"
        assert [(c.first_seq, c.last_seq, c.rows) for c in after] == [(c.first_seq, c.last_seq, c.rows)
                                                                       for c in closed[k + 1:]]
        assert restarted.rows == uninterrupted.rows and list(restarted.pending) == list(uninterrupted.pending)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_restore_from_a_tumbling_windows_checkpoint_closes_the_same_windows(seed):
    assert_restart_from_every_checkpoint_closes_the_same_windows(logged_stream(60, seed), Window(size=12))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_restore_from_a_sliding_windows_checkpoint_closes_the_same_windows(seed):
    assert_restart_from_every_checkpoint_closes_the_same_windows(logged_stream(60, seed), Window(size=12, slide=5))


def test_restore_with_one_needed_half_and_sliding_windows():
    records = logged_stream(40, seed=3)
    uninterrupted = make(Window(size=6, slide=2), frozenset({RESPONSE}))
    closed = [c for r in records for c in uninterrupted.add(r)]
    checkpoint = closed[2].checkpoint
    restarted = make(Window(size=6, slide=2), frozenset({RESPONSE}))
    restarted.restore(checkpoint, [r for r in records if checkpoint.replay_from <= r.seq <= checkpoint.consumed_through])
    after = [c for r in records if r.seq > checkpoint.consumed_through for c in restarted.add(r)]
    assert summary(after) == summary(closed[3:]) and len(after) >= 2


def test_a_timed_out_request_kept_by_a_sliding_window_is_restored_as_an_observation_in_its_place():
    # a request whose predictor failed is never answered: it times out into an observation alone, and a
    # sliding window keeps it; a restart must not turn it back into a half waiting for its partner
    def run(w, records_and_ticks):
        return [c for item in records_and_ticks
                for c in (w.tick(item) if isinstance(item, float) else w.add(item))]

    stream = [req(1, "b", t=0.0), resp(2, "b", t=0.0), req(3, "c", t=1.0), resp(4, "c", t=1.0),
              req(5, "failed", t=2.0), 10.0, req(6, "d", t=11.0), resp(7, "d", t=11.0),
              req(8, "e", t=12.0), resp(9, "e", t=12.0)]
    window = Window(size=3, slide=1)
    uninterrupted = Windower(window, BOTH, pair_timeout_s=5.0)
    closed = run(uninterrupted, stream)
    assert summary(closed) == [([("b", 1), ("c", 1), ("failed", 1)], "size"),
                               ([("c", 1), ("failed", 1), ("d", 1)], "size"),
                               ([("failed", 1), ("d", 1), ("e", 1)], "size")]
    checkpoint = closed[0].checkpoint
    assert checkpoint.retained == ("c", "failed") and checkpoint.pending == ()
    restarted = Windower(window, BOTH, pair_timeout_s=5.0)
    records = [r for r in stream if isinstance(r, Record)]
    restarted.restore(checkpoint, [r for r in records if checkpoint.replay_from <= r.seq <= checkpoint.consumed_through])
    assert [(o.id, o.outputs is None) for o in restarted.current] == [("c", False), ("failed", True)]
    assert not restarted.pending
    after = run(restarted, [r for r in records if r.seq > checkpoint.consumed_through])
    assert summary(after) == summary(closed[1:])


def test_restore_refuses_records_past_the_checkpoint():
    w = make(Window(size=4))
    with pytest.raises(ValueError, match="past the checkpoint"):
        w.restore(Checkpoint(consumed_through=2, pending=("a",), replay_from=1), [req(1, "a"), req(3, "b")])


def test_a_sliding_time_window_closes_again_only_after_new_rows():
    """Kept rows were tested already: without new traffic no further window closes, however long it waits
    (ticks used to close a window of the same kept rows every half second)."""
    w = Windower(Window(size=100, seconds=10.0, slide=50), frozenset({REQUEST}), min_rows=1)
    for seq in range(1, 5):
        w.add(req(seq, f"e{seq}", t=float(seq)))
    first = w.tick(20.0)
    assert summary(first) == [([("e1", 1), ("e2", 1), ("e3", 1), ("e4", 1)], "time")]
    assert [o.id for o in w.current] == ["e1", "e2", "e3", "e4"]  # kept for the next window (slide)
    assert all(w.tick(t) == [] for t in (20.5, 31.0, 100.0, 10_000.0))
    w.add(req(5, "e5", t=10_001.0))
    assert w.tick(10_005.0) == []  # the new row's window is 4 s old
    assert summary(w.tick(10_011.0)) == [([("e1", 1), ("e2", 1), ("e3", 1), ("e4", 1), ("e5", 1)], "time")]
