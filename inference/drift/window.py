"""From logged events to windows of observations, and back again after a restart.

An *observation* is one request's rows joined with its response's rows (same ``ce-id``), or one half
alone when the detector needs one half only, or when the other half has not come within
``pair_timeout_s`` (a request whose predictor failed is logged without a response). A window closes
after ``size`` rows or ``seconds`` (whichever comes first, with at least ``min_rows``); with ``slide``
> 0 the newest ``size - slide`` rows' observations stay for the next window.

Every verdict carries a :class:`Checkpoint`: what the window consumed (up to ``consumed_through``), which
observations it kept (sliding) and which halves were waiting for their partner. Replaying the log from
the checkpoint rebuilds exactly the state after that window: nothing counted twice, nothing lost.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from bundle.drift import Window
from bundle.observations import REQUEST, RESPONSE, Record


@dataclass
class Observation:
    id: str
    first_seq: int
    done_seq: int
    t: float
    inputs: np.ndarray | None  # request rows [n, F]
    outputs: np.ndarray | None  # response rows [n, O]

    @property
    def rows(self) -> int:
        return len(self.inputs) if self.inputs is not None else len(self.outputs)


@dataclass(frozen=True)
class Checkpoint:
    consumed_through: int = 0
    retained: tuple[str, ...] = ()  # ids of observations kept for the next (sliding) window
    pending: tuple[str, ...] = ()  # ids of halves still waiting for their partner
    replay_from: int = 1

    def to_dict(self) -> dict:
        return {"consumed_through": self.consumed_through, "retained": list(self.retained),
                "pending": list(self.pending), "replay_from": self.replay_from}

    @classmethod
    def from_dict(cls, data: dict) -> Checkpoint:
        return cls(int(data["consumed_through"]), tuple(data["retained"]), tuple(data["pending"]),
                   int(data["replay_from"]))


@dataclass
class ClosedWindow:
    observations: list[Observation]
    checkpoint: Checkpoint
    reason: str  # "size" | "time"

    @property
    def rows(self) -> int:
        return sum(o.rows for o in self.observations)

    @property
    def first_seq(self) -> int:
        return min(o.first_seq for o in self.observations)

    @property
    def last_seq(self) -> int:
        return max(o.done_seq for o in self.observations)

    def present(self, part: str) -> np.ndarray:
        """The rows of ``part`` ("inputs" or "outputs") of the observations that have that half."""
        blocks = [getattr(o, part) for o in self.observations if getattr(o, part) is not None]
        return np.concatenate(blocks) if blocks else np.empty((0, 0))


@dataclass
class Windower:
    window: Window
    needs: frozenset[str]  # {REQUEST, RESPONSE} or one of them
    pair_timeout_s: float = 30.0
    min_rows: int = 10
    max_pending: int = 10_000
    current: list[Observation] = field(default_factory=list)
    pending: OrderedDict[str, Record] = field(default_factory=OrderedDict)  # id -> first half, oldest first
    consumed_through: int = 0
    # when the oldest observation not yet tested arrived: a time window's age (kept, already tested
    # observations of a sliding window do not count, or each tick would test the same rows again)
    opened: float | None = None

    def __post_init__(self):
        self._count()

    def _count(self) -> None:
        """Rows of ``current``, kept as it changes: every event asks, and summing a window each time cost
        more than the event's own work."""
        self._rows = sum(o.rows for o in self.current)

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def full(self) -> bool:
        return len(self.pending) >= self.max_pending

    def would_wait(self, event_id: str, kind: str) -> bool:
        """Whether an event of this id and kind would wait for its partner (grow ``pending``); the partner
        of a waiting half completes a pair instead, so a full ``pending`` must still take it."""
        if kind not in self.needs or len(self.needs) == 1:
            return False
        first = self.pending.get(event_id)
        return first is None or first.type == kind

    def add(self, record: Record) -> list[ClosedWindow]:
        """Take one logged record; returns the windows it closed (usually none)."""
        observation = self._pair(record)
        if observation is None:
            return []
        self._append(observation)
        return self._close("size") if self.rows >= self.window.size else []

    def tick(self, now: float) -> list[ClosedWindow]:
        """Time passes: halves waiting too long become observations alone; a time window may close."""
        closed: list[ClosedWindow] = []
        while self.pending:
            first = next(iter(self.pending.values()))
            if now - first.t < self.pair_timeout_s:
                break
            del self.pending[first.id]
            self._append(_observation(first.id, first, None, first.seq, first.seq))
            if self.rows >= self.window.size:
                closed += self._close("size")
        if (self.window.seconds is not None and self.opened is not None and self.rows >= self.min_rows
                and now - self.opened >= self.window.seconds):
            closed += self._close("time")
        return closed

    def _append(self, observation: Observation) -> None:
        if self.opened is None:
            self.opened = observation.t
        self.current.append(observation)
        self._rows += observation.rows

    def _pair(self, record: Record) -> Observation | None:
        if record.type not in self.needs:
            return None
        if len(self.needs) == 1:
            return _observation(record.id, record, None, record.seq, record.seq)
        first = self.pending.pop(record.id, None)
        if first is None or first.type == record.type:
            self.pending[record.id] = record
            return None
        return _observation(record.id, first, record, first.seq, record.seq)

    def _close(self, reason: str) -> list[ClosedWindow]:
        observations = self.current
        consumed = max([self.consumed_through, *(o.done_seq for o in observations)])
        keep: list[Observation] = []
        if self.window.slide:
            budget = self.window.size - self.window.slide
            for o in reversed(observations):
                if budget <= 0:
                    break
                keep.insert(0, o)
                budget -= o.rows
        self.current, self.consumed_through, self.opened = keep, consumed, None
        self._count()
        firsts = [r.seq for r in self.pending.values()] + [o.first_seq for o in keep]
        checkpoint = Checkpoint(consumed, tuple(o.id for o in keep), tuple(self.pending),
                                min([consumed + 1, *firsts]))
        return [ClosedWindow(observations, checkpoint, reason)]

    def restore(self, checkpoint: Checkpoint, records) -> None:
        """Rebuild the state right after ``checkpoint`` from the log's records from ``checkpoint.replay_from``
        through ``checkpoint.consumed_through``; records after that are then fed through :meth:`add`,
        as they were the first time."""
        self.consumed_through = checkpoint.consumed_through
        wanted = set(checkpoint.retained) | set(checkpoint.pending)
        for record in records:
            if record.seq > checkpoint.consumed_through:
                raise ValueError(f"record {record.seq} is past the checkpoint: feed it through add()")
            if record.id not in wanted:
                continue  # part of a window already tested
            observation = self._pair(record)
            if observation is not None:
                self.current.append(observation)
        # a kept observation made of one half alone (its partner timed out) replays as a waiting half: it was
        # an observation, in the checkpoint's order (tick appended it after later-completed pairs)
        kept = {o.id: o for o in self.current}
        for event_id in checkpoint.retained:
            if event_id not in kept and event_id in self.pending and event_id not in checkpoint.pending:
                half = self.pending.pop(event_id)
                kept[event_id] = _observation(event_id, half, None, half.seq, half.seq)
        self.current = [kept[i] for i in checkpoint.retained if i in kept]
        self._count()


def _observation(event_id: str, first: Record, second: Record | None, first_seq: int, done_seq: int) -> Observation:
    halves = {first.type: first}
    if second is not None:
        halves[second.type] = second
    request, response = halves.get(REQUEST), halves.get(RESPONSE)
    inputs = np.asarray(request.rows, dtype=np.float64) if request is not None else None
    outputs = np.asarray(response.rows, dtype=np.float64) if response is not None else None
    if inputs is not None and outputs is not None and len(inputs) != len(outputs):
        outputs = None  # the halves disagree on their row count: keep the inputs, drop the answer
    return Observation(event_id, first_seq, done_seq, first.t, inputs, outputs)
