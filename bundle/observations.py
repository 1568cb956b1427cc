"""The drift sidecar's observation log: what it keeps of logged inference events, and all that the
monitoring pipeline reads back (standard library only: the sidecar writes it, training's side reads it).

Logged payloads are health data, so the log keeps only what detection needs, never the payload: for a
request event the model-input rows a tabular detector tests (UCI codes, ``null`` = missing); for a
response event the output columns a detector tests (P(positive), or the image embedding). One JSON
object per line, in segment files named by their first sequence number::

    <log_dir>/segments/00000000000000000001.jsonl
    {"seq": 1, "t": 1795400000.12, "id": "<ce-id>", "type": "request", "rows": [[63.0, 1.0, ...], ...]}
    {"seq": 2, "t": 1795400000.13, "id": "<ce-id>", "type": "response", "rows": [[0.83], ...]}

``seq`` increases by one per line across segments; a request and its response share ``id`` (the
CloudEvent id). Files are readable by the service user alone (0600 in a 0700 folder).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SEGMENTS = "segments"
SUFFIX = ".jsonl"
REQUEST = "request"
RESPONSE = "response"
TYPES = (REQUEST, RESPONSE)


@dataclass(frozen=True)
class Record:
    seq: int
    t: float  # seconds since the epoch, when the sidecar accepted the event
    id: str
    type: str  # request | response
    rows: tuple[tuple[float, ...], ...]  # NaN = missing

    def to_line(self) -> str:
        rows = [[None if math.isnan(v) else v for v in row] for row in self.rows]
        return json.dumps({"seq": self.seq, "t": round(self.t, 6), "id": self.id, "type": self.type, "rows": rows},
                          separators=(",", ":"), allow_nan=False) + "\n"

    @classmethod
    def from_line(cls, line: str) -> Record:
        data = json.loads(line)
        rows = tuple(tuple(math.nan if v is None else float(v) for v in row) for row in data["rows"])
        return cls(int(data["seq"]), float(data["t"]), str(data["id"]), str(data["type"]), rows)


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SUFFIX}"


def segments(log_dir: Path) -> list[Path]:
    """Segment files, oldest first."""
    folder = Path(log_dir) / SEGMENTS
    return sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


def read(log_dir: Path, since_seq: int = 0, since_t: float | None = None, until_t: float | None = None
         ) -> Iterator[Record]:
    """Records with ``seq >= since_seq`` (and ``since_t <= t < until_t`` when given), in order. A last
    line cut short by a crash mid-write is skipped: it was never acknowledged."""
    files = segments(log_dir)
    starts = [int(p.name[: -len(SUFFIX)]) for p in files]
    for i, path in enumerate(files):
        if i + 1 < len(starts) and starts[i + 1] <= since_seq:
            continue  # wholly before since_seq
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.endswith("\n"):
                    break
                record = Record.from_line(line)
                if record.seq < since_seq:
                    continue
                if since_t is not None and record.t < since_t:
                    continue
                if until_t is not None and record.t >= until_t:
                    continue
                yield record


def paired(records: Iterator[Record]) -> Iterator[tuple[Record | None, Record | None]]:
    """(request, response) pairs by event id, in the order their pair completed; unpaired ones at the end
    with ``None`` for the missing half."""
    pending: dict[str, dict[str, Record]] = {}
    for record in records:
        halves = pending.setdefault(record.id, {})
        halves[record.type] = record
        if len(halves) == 2:
            del pending[record.id]
            yield halves[REQUEST], halves[RESPONSE]
    for halves in pending.values():
        yield halves.get(REQUEST), halves.get(RESPONSE)
