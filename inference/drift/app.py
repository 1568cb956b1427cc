"""The sidecar on HTTP (starlette): ``POST /`` takes logged events (where the KServe logger's URL
points), ``GET /v1/drift`` the latest verdicts, ``GET /metrics`` Prometheus, ``GET /healthz``."""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inference.drift.service import DriftService
from inference.drift.verdicts import MAX_LATEST


def build_app(service: DriftService) -> Starlette:
    async def read_capped(request: Request) -> bytes | None:
        """The body, or None once it passes the limit: a chunked body declares no length, so it is counted
        as it arrives instead of being read whole first."""
        limit, parts, size = service.settings.max_body_bytes, [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            parts.append(chunk)
        return b"".join(parts)

    async def receive(request: Request) -> Response:
        declared = request.headers.get("content-length")
        limit = service.settings.max_body_bytes
        body = None if declared and declared.isdigit() and int(declared) > limit else await read_capped(request)
        if body is None:
            size = f"{declared} bytes" if declared else "longer than that (sent in chunks)"
            answer = service._reject(413, "body_too_large", f"the limit is {limit} bytes; the event body is {size}")
        else:
            answer = service.accept(dict(request.headers), body)
        headers = {"Retry-After": str(answer.retry_after)} if answer.retry_after else None
        return JSONResponse(answer.body, status_code=answer.status, headers=headers)

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

    return Starlette(routes=[Route("/", receive, methods=["POST"]), Route("/v1/drift", drift, methods=["GET"]),
                             Route("/metrics", metrics, methods=["GET"]), Route("/healthz", health, methods=["GET"])],
                     lifespan=lifespan)
