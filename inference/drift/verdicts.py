"""The verdict log: one JSON line per tested window, appended and never rewritten (readable by the service
user alone). Its last line's checkpoint is where a restarted sidecar resumes; ``GET /v1/drift`` serves
its latest lines. A verdict holds p-values, distances and counts: never a payload."""

from __future__ import annotations

import json
import os
from collections import deque
from pathlib import Path

from inference.drift.store import DIR_MODE, FILE_MODE
from inference.drift.window import Checkpoint

FILE = "verdicts.jsonl"
MAX_LATEST = 200  # verdicts held in memory for ``GET /v1/drift?limit=``: the most a caller may ask for


class VerdictLog:
    def __init__(self, log_dir: Path, keep_latest: int = MAX_LATEST, fsync: bool = False):
        self.path = Path(log_dir) / FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, DIR_MODE)
        self.fsync = fsync
        self.latest: deque[dict] = deque(maxlen=keep_latest)
        self.count = 0
        self.checkpoint = Checkpoint()
        if self.path.exists():
            self._read_back()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)

    def _read_back(self) -> None:
        data = self.path.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut != len(data):  # a verdict cut short by a crash: its window is tested again
            with open(self.path, "r+b") as handle:
                handle.truncate(cut)
        for line in data[:cut].splitlines():
            verdict = json.loads(line)
            self.latest.append(verdict)
            self.count += 1
        if self.latest:
            self.checkpoint = Checkpoint.from_dict(self.latest[-1]["checkpoint"])

    def append(self, verdict: dict) -> None:
        line = (json.dumps(verdict, separators=(",", ":")) + "\n").encode()
        os.write(self._fd, line)
        if self.fsync:
            os.fsync(self._fd)
        self.latest.append(verdict)
        self.count += 1
        self.checkpoint = Checkpoint.from_dict(verdict["checkpoint"])

    def close(self) -> None:
        os.close(self._fd)
