"""The sidecar's core, without the web layer: take an event, keep what the detector needs on disk, close
windows, test them on one worker thread, record verdicts. :mod:`inference.drift.app` puts it on HTTP."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bundle import Bundle, observations
from inference.drift import events
from inference.drift.metrics import DriftMetrics
from inference.drift.recent import RecentEvents
from inference.drift.settings import DriftSettings
from inference.drift.store import ObservationStore, StoreFull
from inference.drift.verdicts import VerdictLog
from inference.drift.window import ClosedWindow, Windower

log = logging.getLogger("inference.drift")
DEDUP_MEMORY = 100_000
ALERT_TYPE = "org.clinops.drift.detected"


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict
    retry_after: int | None = None


class DriftService:
    def __init__(self, settings: DriftSettings, bundle: Bundle, detector, clock=time.time):
        self.settings, self.bundle, self.detector, self.clock = settings, bundle, detector, clock
        window = bundle.drift.window
        from bundle.drift import Window

        self.window = Window(settings.window_size or window.size,
                             settings.window_seconds if settings.window_seconds is not None else window.seconds,
                             settings.window_slide if settings.window_slide is not None else window.slide)
        self.workload = settings.workload
        self.metrics = DriftMetrics(self.workload)
        self.metrics.window_size.labels(self.workload).set(self.window.size)
        log_dir = settings.log_path
        self.verdicts = VerdictLog(log_dir, fsync=settings.fsync)
        # one sender, in order; each alert tries 3 times with 5 s timeouts, which the detector must not wait for
        self._alerts = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drift-alert")
        self.store = ObservationStore(log_dir, settings.max_log_bytes, settings.max_log_age_s, fsync=settings.fsync)
        self.windower = Windower(self.window, detector.needs, settings.pair_timeout_s, settings.min_rows,
                                 settings.max_pending)
        self.seen = RecentEvents(DEDUP_MEMORY)
        self.queue: list[ClosedWindow] = []
        self.lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._syncing: asyncio.Future | None = None  # the fsync under way, which later events wait for
        self.windows_tested = 0
        self._resume()

    # -- start-up: resume the current window from the log -------------------------------------------------
    def _resume(self) -> None:
        checkpoint = self.verdicts.checkpoint
        self.store.protected_from = checkpoint.replay_from
        before, after = [], []
        for record in observations.read(self.store.log_dir, since_seq=checkpoint.replay_from):
            (before if record.seq <= checkpoint.consumed_through else after).append(record)
            self.seen.add(record.id, record.type)
        self.windower.restore(checkpoint, before)
        for record in after:
            self.queue += self.windower.add(record)
        self._gauges()
        log.info("drift sidecar for %s: resumed after %d verdicts; %d rows in the current window, %d windows "
                 "to test, log at seq %d", self.workload, self.verdicts.count, self.windower.rows, len(self.queue),
                 self.store.next_seq - 1)

    # -- the request path ---------------------------------------------------------------------------------
    def accept(self, headers: dict[str, str], body: bytes) -> Answer:
        """One logged event: 200 once it is on disk (or not needed); 4xx for a bad one; 429/503 to retry."""
        w = self.workload
        if len(body) > self.settings.max_body_bytes:
            return self._reject(413, "body_too_large", f"the event body is {len(body)} bytes; the limit is "
                                                       f"{self.settings.max_body_bytes}")
        try:
            event = events.parse(headers, body)
        except events.BadEvent as err:
            return self._reject(400, err.reason, str(err))
        self.metrics.received.labels(w, event.kind).inc()
        try:
            rows = self.detector.extract(event)
        except events.BadEvent as err:
            return self._reject(400, err.reason, str(err))
        if rows is None:
            self.metrics.ignored.labels(w, event.kind).inc()
            return Answer(200, {"status": "ignored", "id": event.id, "type": event.kind})
        with self.lock:
            if (event.id, event.kind) in self.seen:
                self.metrics.duplicates.labels(w).inc()
                return Answer(200, {"status": "duplicate", "id": event.id, "type": event.kind})
            if ((self.windower.full and self.windower.would_wait(event.id, event.kind))
                    or len(self.queue) >= self.settings.max_windows_queued):
                return self._reject(429, "backpressure", "the detector is behind; retry", retry_after=1)
            try:
                record = self.store.append(event.id, event.kind, rows, self.clock())
            except StoreFull as err:
                return self._reject(503, "log_full", str(err), retry_after=5)
            except OSError as err:
                return self._reject(503, "log_unwritable", f"the observation log cannot be written: {err.strerror}",
                                    retry_after=5)
            self.seen.add(event.id, event.kind)
            self.queue += self.windower.add(record)
            self.metrics.processed.labels(w, event.kind).inc()
            self._gauges()
        self._poke()
        return Answer(200, {"status": "accepted", "id": event.id, "type": event.kind, "seq": record.seq})

    async def accept_durably(self, headers: dict[str, str], body: bytes) -> Answer:
        """:meth:`accept`, and with ``fsync`` its 200 only once the record is durable: the answer waits for an
        fsync on a thread (one covers every event written before it began), the event loop does not."""
        answer = self.accept(headers, body)
        if answer.status != 200 or not self.settings.fsync:
            return answer
        # a duplicate (a retry) may have come while its first copy waits for its fsync: it waits for all written
        seq = answer.body.get("seq") or (self.store.next_seq - 1 if answer.body["status"] == "duplicate" else None)
        if seq is None:
            return answer
        try:
            while self.store.synced_seq < seq:
                syncing = self._syncing
                if syncing is None or syncing.done():
                    syncing = self._syncing = asyncio.ensure_future(asyncio.to_thread(self.store.sync))
                await asyncio.shield(syncing)  # a sender that goes away does not cancel the others' fsync
        except OSError as err:
            log.error("drift sidecar: the observation log cannot be synced to disk: %s", err.strerror)
            return self._reject(503, "log_unwritable", f"the observation log cannot be synced to disk: {err.strerror}",
                                retry_after=5)
        return answer

    def _reject(self, status: int, reason: str, message: str, retry_after: int | None = None) -> Answer:
        self.metrics.rejected.labels(self.workload, reason).inc()
        return Answer(status, {"error": message, "reason": reason}, retry_after)

    def _gauges(self) -> None:
        w = self.workload
        self.metrics.window_fill.labels(w).set(self.windower.rows)
        self.metrics.pending.labels(w).set(len(self.windower.pending))
        self.metrics.backlog.labels(w).set(len(self.queue))
        self.metrics.log_bytes.labels(w).set(self.store.bytes)

    # -- time and the detector ----------------------------------------------------------------------------
    def tick(self) -> None:
        with self.lock:
            self.queue += self.windower.tick(self.clock())
            self.store.enforce_retention(self.clock())
            self._gauges()
        self._poke()

    def test_queued(self) -> int:
        """Test every queued window in order (on the caller's thread); returns how many."""
        done = 0
        while True:
            with self.lock:
                if not self.queue:
                    return done
                window = self.queue[0]
            try:
                self.store.sync()  # a verdict is recorded only over durable rows (with fsync; else a no-op)
            except OSError as err:  # the events' senders are told 503 and retry; the window is tested all the same
                log.error("drift sidecar: the observation log cannot be synced to disk: %s", err.strerror)
            try:
                verdict = self._verdict(window)
            except Exception as err:  # a window the detector cannot test is recorded, never retried forever
                self.metrics.detector_errors.labels(self.workload).inc()
                log.error("drift detector failed on window %d-%d: %s", window.first_seq, window.last_seq,
                          type(err).__name__)
                verdict = self._verdict(window, error=f"{type(err).__name__}: {str(err)[:200]}")
            with self.lock:
                self.verdicts.append(verdict)
                self.store.protected_from = self.verdicts.checkpoint.replay_from
                self.queue.pop(0)
                self.metrics.record_verdict(verdict)
                self.windows_tested += 1
                self._gauges()
            if verdict["is_drift"] and self.settings.alert_url:  # on its own thread: detection never waits
                self._alerts.submit(self._alert, verdict)
            done += 1

    def _verdict(self, window: ClosedWindow, error: str | None = None) -> dict:
        result = (self.detector.verdict(window) if error is None else
                  {"is_drift": False, "tested": False, "error": error, "features": [], "score": None,
                   "threshold": {}, "rows_tested": {}, "detector_seconds": 0.0})
        manifest = self.bundle.manifest
        times = [o.t for o in window.observations]
        return {"workload": self.workload, "detector": self.detector.kind, "model_name": manifest.model_name,
                "model_version": manifest.model_version, "time": self.clock(), **result,
                "window": {"first_seq": window.first_seq, "last_seq": window.last_seq, "start": min(times),
                           "end": max(times), "events": len(window.observations), "rows": window.rows,
                           "closed_by": window.reason, "size": self.window.size},
                "checkpoint": window.checkpoint.to_dict()}

    def _alert(self, verdict: dict) -> None:
        from cloudevents.conversion import to_structured
        from cloudevents.http import CloudEvent

        summary = {k: verdict[k] for k in ("workload", "model_name", "model_version", "is_drift", "window", "score")}
        summary["features"] = sorted(verdict["features"], key=lambda t: t["p_val"])[:10]
        event = CloudEvent({"id": str(uuid.uuid4()), "type": ALERT_TYPE, "source": f"/clinops/drift/{self.workload}",
                            "datacontenttype": "application/json"}, summary)
        headers, body = to_structured(event)
        for attempt in range(3):
            try:
                request = urllib.request.Request(self.settings.alert_url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=5) as response:
                    if 200 <= response.status < 300:
                        self.metrics.alerts.labels(self.workload, "delivered").inc()
                        return
            except OSError:
                pass
            time.sleep(0.2 * 2 ** attempt)
        self.metrics.alerts.labels(self.workload, "failed").inc()
        log.warning("drift alert for %s could not be delivered to %s", self.workload, self.settings.alert_url)

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def run_detector(self) -> None:
        """Background task: test windows as they close, on a worker thread (the event loop keeps accepting)."""
        self._wake = asyncio.Event()
        while True:
            await asyncio.to_thread(self.test_queued)
            self._wake.clear()
            if not self.queue:
                await self._wake.wait()

    async def run_clock(self, every_s: float = 0.5) -> None:
        while True:
            await asyncio.sleep(every_s)
            self.tick()

    def status(self, limit: int = 20) -> dict:
        latest = list(self.verdicts.latest)[-limit:]
        return {"workload": self.workload, "detector": self.detector.kind,
                "model_name": self.bundle.manifest.model_name, "model_version": self.bundle.manifest.model_version,
                "window": {"size": self.window.size, "seconds": self.window.seconds, "slide": self.window.slide,
                           "rows": self.windower.rows, "pending": len(self.windower.pending),
                           "queued": len(self.queue)},
                "windows_tested": self.verdicts.count, "verdicts": latest}

    def close(self) -> None:
        self._alerts.shutdown(wait=True, cancel_futures=False)  # alerts already decided are still sent
        self.store.close()
        self.verdicts.close()
