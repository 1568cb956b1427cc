"""The sidecar on HTTP: ``POST /`` takes logged events (where the KServe logger's URL points), ``GET /v1/drift``
the latest verdicts, ``GET /metrics`` Prometheus, ``GET /healthz``.

``POST /`` is the hot path, one call per logged request and one per response, and is served by plain ASGI
(:class:`EventsFirst`); the rest, and the lifespan that runs the detector, by a Starlette app."""

from __future__ import annotations

import asyncio
import contextlib
import json

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inference.drift.service import DriftService
from inference.drift.verdicts import MAX_LATEST


class Disconnected(Exception):
    """The client went away before its whole event arrived: nothing to answer."""


class EventsFirst:
    """The ASGI app the sidecar serves. A logged event (``POST /``) goes straight to the service, without
    Starlette's middleware, routing and request and response objects: a tenth more events a second on one core.
    Everything else, the lifespan included, goes to ``app``."""

    def __init__(self, service: DriftService, app):
        self.service, self.app = service, app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/":
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":  # counted with the other refusals
            refused = self.service._reject(405, "method_not_allowed", f"{scope['method']} /: logged events are POSTed here")
            await _answer(send, refused.status, refused.body, [(b"allow", b"POST")])
            return
        headers: dict[str, str] = {}
        for key, value in scope["headers"]:  # names come lower-cased; the first of repeated ones counts
            headers.setdefault(key.decode("latin-1"), value.decode("latin-1"))
        limit = self.service.settings.max_body_bytes
        declared = headers.get("content-length")
        try:
            body = None if declared and declared.isdigit() and int(declared) > limit else await _read(receive, limit)
        except Disconnected:
            return
        if body is None:
            size = f"{declared} bytes" if declared else "longer than that (sent in chunks)"
            answer = self.service._reject(413, "body_too_large", f"the limit is {limit} bytes; the event body is {size}")
        else:
            answer = await self.service.accept_durably(headers, body)
        await _answer(send, answer.status, answer.body,
                      [(b"retry-after", str(answer.retry_after).encode())] if answer.retry_after else [])


async def _answer(send, status: int, body: dict, headers: list) -> None:
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": payload})


async def _read(receive, limit: int) -> bytes | None:
    """The body, or None once it passes ``limit``: a chunked body declares no length, so it is counted as it
    arrives instead of being read whole first."""
    parts, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        more = message.get("more_body", False)
    return b"".join(parts)


def build_app(service: DriftService) -> EventsFirst:
    async def drift(request: Request) -> Response:
        try:
            limit = max(1, min(int(request.query_params.get("limit", "20")), MAX_LATEST))
        except ValueError:
            return JSONResponse({"error": "limit: an integer is needed"}, status_code=400)
        return JSONResponse(service.status(limit))

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok", "workload": service.workload})

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        tasks = [asyncio.create_task(service.run_detector()), asyncio.create_task(service.run_clock())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            service.close()

    return EventsFirst(service, Starlette(routes=[Route("/v1/drift", drift, methods=["GET"]),
                                                  Route("/metrics", metrics, methods=["GET"]),
                                                  Route("/healthz", health, methods=["GET"])], lifespan=lifespan))
