"""The durable half of the sidecar: an append-only observation log (format: :mod:`bundle.observations`).

An event is acknowledged only after its line is written to the segment file (``write`` reached the
kernel: a ``kill -9`` loses nothing). With ``fsync`` it is acknowledged only after :meth:`sync` has made it
durable too (it survives a power cut): one ``fsync`` covers every line written before it began, so events
that arrive while one runs share the next (group commit), and the service calls it on a thread, so that the
event loop never waits on the disk. A line cut short by a crash is cut off at the next start.

Retention removes whole segments, oldest first, once they are older than ``max_age_s`` (since their last
write) or the log is over ``max_bytes``, but never a segment that holds observations the detector has not
yet used: when that is what fills the log, :meth:`append` raises :class:`StoreFull` and the sender is told
to retry (HTTP 503), nothing is dropped. A segment is closed after ``segment_bytes`` or after
``max_age_s / 8``, so that at low traffic no row outlives ``max_age_s`` by more than an eighth (a 4 MB
segment holds some 20,000 heart-disease events: weeks of a quiet clinic's traffic); the segment being
written goes too once it has aged, all of it tested.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from bundle.observations import SEGMENTS, Record, segment_name, segments

DIR_MODE = 0o700
FILE_MODE = 0o600
RETENTION_CHECK_S = 1.0  # age retention lists and stats the segments: not for every event


class StoreFull(RuntimeError):
    """The log is at its size limit with observations not yet tested: retry later."""


class ObservationStore:
    def __init__(self, log_dir: Path, max_bytes: int, max_age_s: float, segment_bytes: int = 4 * 1024 * 1024,
                 fsync: bool = False):
        self.log_dir = Path(log_dir)
        self.folder = self.log_dir / SEGMENTS
        self.folder.mkdir(parents=True, exist_ok=True)
        for path in (self.log_dir, self.folder):
            os.chmod(path, DIR_MODE)
        self.max_bytes, self.max_age_s, self.segment_bytes, self.fsync = max_bytes, max_age_s, segment_bytes, fsync
        self.segment_age_s = max_age_s / 8
        self._started = 0.0  # time of the first record of the segment being written
        self._retention_checked = float("-inf")
        self.protected_from = 0  # segments holding seq >= this are still needed (set by the service)
        self._fd: int | None = None
        self._size = 0
        self._bytes = sum(p.stat().st_size for p in segments(self.log_dir))
        self.next_seq = self._recover()
        # what a crash of the machine cannot take: every record up to this seq (a restart trusts what it found)
        self.synced_seq = self.next_seq - 1
        self._sync_lock = threading.Lock()  # one fsync at a time; a segment is not closed under one

    # -- start-up --------------------------------------------------------------------------------------
    def _recover(self) -> int:
        """The next sequence number; cuts off a last line a crash left half-written."""
        files = segments(self.log_dir)
        if not files:
            return 1
        last = files[-1]
        data = last.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut != len(data):
            with open(last, "r+b") as handle:
                handle.truncate(cut)
            self._bytes -= len(data) - cut
            data = data[:cut]
        lines = data.splitlines()
        if lines:
            return Record.from_line(lines[-1].decode() + "\n").seq + 1
        return int(last.name.split(".")[0])  # an empty segment starts at its own number

    # -- writing ---------------------------------------------------------------------------------------
    def append(self, record_id: str, kind: str, rows, now: float | None = None) -> Record:
        """Write one record; returns it with its sequence number once it is on disk."""
        t = now if now is not None else time.time()
        if self._bytes >= self.max_bytes or t - self._retention_checked >= RETENTION_CHECK_S:
            self.enforce_retention(t)  # by size at once; by age once a second (the service's clock ticks too)
            self._retention_checked = t
        if self._bytes >= self.max_bytes:
            raise StoreFull(f"the observation log is at its limit ({self.max_bytes} bytes) with observations "
                            f"not yet tested")
        record = Record(self.next_seq, t, record_id, kind,
                        tuple(tuple(float(v) for v in row) for row in rows))
        line = record.to_line().encode()
        if (self._fd is None or self._size + len(line) > self.segment_bytes
                or record.t - self._started >= self.segment_age_s):
            self._open_segment(record.seq)
            self._started = record.t
        written = os.write(self._fd, line)
        if written != len(line):  # a full disk: take the partial line back so the log stays readable
            os.ftruncate(self._fd, self._size)
            raise StoreFull(f"short write to the observation log ({written} of {len(line)} bytes)")
        self._size += len(line)
        self._bytes += len(line)
        self.next_seq += 1
        return record

    def sync(self) -> int:
        """Make every record written so far durable (``fsync``; nothing to do without the setting); safe from any
        thread. Returns the seq it made durable through."""
        with self._sync_lock:
            target = self.next_seq - 1  # written before this read; later ones may be covered too
            if self.fsync and target > self.synced_seq and self._fd is not None:
                os.fsync(self._fd)  # the segments before this one were synced as they were closed
            self.synced_seq = max(self.synced_seq, target)
            return self.synced_seq

    def _open_segment(self, first_seq: int) -> None:
        with self._sync_lock:
            self._close()
            path = self.folder / segment_name(first_seq)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
            self._size = os.fstat(self._fd).st_size

    def close(self) -> None:
        with self._sync_lock:
            self._close()

    def _close(self) -> None:
        """Under the sync lock: a segment is closed synced, so that :meth:`sync` need only sync the open one."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                if self.fsync and self.next_seq - 1 > self.synced_seq:
                    os.fsync(fd)  # a failure reaches the caller: an append answers 503, and nothing is marked synced
                self.synced_seq = self.next_seq - 1
            finally:
                os.close(fd)

    # -- retention -------------------------------------------------------------------------------------
    def enforce_retention(self, now: float | None = None) -> None:
        now = now if now is not None else time.time()
        files = segments(self.log_dir)
        for i, path in enumerate(files):
            last = i == len(files) - 1
            next_first = self.next_seq if last else int(files[i + 1].name.split(".")[0])
            if next_first > self.protected_from:
                break  # this segment still holds observations the detector needs
            too_old = now - path.stat().st_mtime > self.max_age_s
            if not too_old and self._bytes < self.max_bytes:
                break
            if last:
                self.close()  # the segment being written: the next record opens a new one
            self._bytes -= path.stat().st_size
            path.unlink()

    @property
    def bytes(self) -> int:
        return self._bytes
