"""Admission control: a bounded amount of work in flight per model, the rest answered at once.

Work is counted in units of what a request costs once decoded: rows of a table (heart-disease), decoded
pixel values of images (pneumonia: every value of an ``(n, h, w, c)`` array). A request that would take the
work in flight past ``limit`` is refused with :class:`Overloaded` — 503 with ``Retry-After`` over REST
(:func:`retry_after_response`), UNAVAILABLE over gRPC — and counted in ``clinops_shed_total{model,reason}``;
nothing waits in an unbounded queue. A request alone is always admitted (its size is bounded by the input
limits), so a large valid request cannot be refused forever. Readiness and liveness do not look at this.
"""

from __future__ import annotations

import numpy as np
from prometheus_client import Counter

from inference import metrics
from inference.envelope import model_from_path, reply
from inference.errors import PredictorUnavailable

SHED = Counter("clinops_shed", "Requests refused at once because the model's work in flight was at its bound.",
               ["model", "reason"])
RETRY_AFTER_S = 1


class Overloaded(PredictorUnavailable):
    """503 / UNAVAILABLE: the model has its bound of work in flight."""


def units(rows: np.ndarray) -> int:
    """Rows of a table; decoded values of anything with more axes (images)."""
    rows = np.asarray(rows)
    return int(len(rows)) if rows.ndim <= 2 else int(rows.size)


class Admission:
    def __init__(self, model: str, limit: int = 0):
        """``limit``: most units in flight; 0 means no bound."""
        if limit < 0:
            raise ValueError("the admission limit must be 0 (no bound) or positive")
        self.model = model
        self.limit = limit
        self.in_flight = 0
        self._shed = SHED.labels(model, "in_flight_limit")

    def enter(self, count: int) -> None:
        if self.limit and self.in_flight and self.in_flight + count > self.limit:
            self._shed.inc()
            raise Overloaded(self.model, f"{self.in_flight} units of work in flight, the bound is {self.limit}: "
                                         f"retry after {RETRY_AFTER_S} s")
        self.in_flight += count

    def leave(self, count: int) -> None:
        self.in_flight -= count


class BodyAdmission:
    """ASGI middleware: REST inference bodies in flight (from admission until the answer is sent) bounded in
    bytes, judged from ``Content-Length`` before a byte of the body is read or parsed. Past the bound a request
    is answered at once with 503 and ``Retry-After`` and counted (``clinops_shed_total{reason=
    "body_bytes_in_flight"}``), so that a flood costs the server a header parse per request, not a body parse.
    A request alone is always admitted (the body size limit bounds it); a body without ``Content-Length``
    (chunked) counts as one of the largest allowed."""

    def __init__(self, app, limit_bytes: int, max_body_bytes: int, models: frozenset[str] = frozenset()):
        self.app = app
        self.limit = limit_bytes
        self.max_body_bytes = max_body_bytes
        self.models = models  # metric labels only for served names
        self.in_flight = 0

    async def __call__(self, scope, receive, send):
        if (not self.limit or scope["type"] != "http" or scope["method"] != "POST"
                or not scope["path"].endswith("/infer")):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        size = min(int(declared), self.max_body_bytes) if declared.isdigit() else self.max_body_bytes
        if self.in_flight and self.in_flight + size > self.limit:
            return await self._shed(scope, send)
        self.in_flight += size
        try:
            return await self.app(scope, receive, send)
        finally:
            self.in_flight -= size

    async def _shed(self, scope, send) -> None:
        model = model_from_path(scope["path"])
        model = model if model in self.models else "unknown"
        SHED.labels(model, "body_bytes_in_flight").inc()
        metrics.REQUESTS.labels(model, "503").inc()
        await reply(send, 503, {"error": f"{self.in_flight} bytes of request bodies in flight, the bound is "
                                         f"{self.limit} (max_in_flight_body_bytes): retry after {RETRY_AFTER_S} s"},
                    headers=((b"retry-after", str(RETRY_AFTER_S).encode()),))


async def retry_after_response(_request, exc: Overloaded):
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=503, content={"error": str(exc.reason)},
                        headers={"Retry-After": str(RETRY_AFTER_S)})
