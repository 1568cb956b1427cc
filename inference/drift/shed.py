"""The sidecar's answer to a flood: past ``--max_in_flight_events`` events inside the app, a logged event is
answered 429 with ``Retry-After`` from its request line (:mod:`inference.shed_protocol`), before its body is read
or parsed, and counted in ``clinops_drift_events_rejected_total{reason="in_flight"}``. The sender retries it, as
the KServe agent does; nothing is acknowledged that is not on disk, so nothing is lost.

Without it, a sender offering many times what the sidecar can write finds every event, accepted ones too, waiting
unread in the socket until its timeout."""

from __future__ import annotations

import json

from inference.shed_protocol import ShedEarlyProtocol

REASON = "in_flight"
RETRY_AFTER_S = 1


class EventGate:
    """:class:`inference.shed_protocol.Judge` for ``POST /`` (where the logger's URL points)."""

    status_line = b"HTTP/1.1 429 Too Many Requests\r\n"
    retry_after = RETRY_AFTER_S

    def __init__(self, limit: int, rejected_counter):
        if limit < 0:
            raise ValueError("max_in_flight_events must be 0 (no bound) or positive")
        self.limit = limit
        self.message = json.dumps({"error": f"{limit} events are in flight, the bound (max_in_flight_events): "
                                            f"retry after {RETRY_AFTER_S} s", "reason": REASON}).encode()
        self._rejected = rejected_counter

    def refuses(self, method: bytes, path: bytes, tasks: int) -> bool:
        return bool(self.limit) and tasks >= self.limit and method == b"POST" and path == b"/"

    def count_shed(self, path: str) -> None:
        self._rejected.inc()


def protocol(gate: EventGate) -> type[ShedEarlyProtocol]:
    """uvicorn's ``http`` protocol class judging by ``gate`` (a class of its own: a class attribute holds it)."""
    return type("SidecarShedProtocol", (ShedEarlyProtocol,), {"judge": gate})
