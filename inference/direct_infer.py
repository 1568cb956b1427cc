"""``POST /v2/models/<name>/infer`` handed straight to KServe's data plane once the envelope has checked it.

KServe's REST endpoint for infer (``V2Endpoints.infer``) does four things with a request: checks the model is
ready, then ``DataPlane.decode`` / ``infer`` / ``encode``. Reaching it through FastAPI costs more than those: an
exception middleware, an exit stack, the router's match over every route, a ``Request`` and a ``Response`` object
and the dependency solver for the path and body parameters, about a tenth of a one-row request's CPU in the
transformer (py-spy). :class:`DirectInfer` makes the same four calls with the same arguments, answers with the
body ``encode`` gives (our models' :class:`inference.responses.JsonInferResponse` is ready bytes) and the headers
KServe's endpoint and :func:`inference.envelope.ready_body_headers` would send, and maps an exception through the
app's own exception handlers, as Starlette's exception middleware does (KServe's: ``InvalidInput`` 400,
``ModelNotFound`` 404, ``ModelNotReady`` 503, …; ours). An exception no handler takes goes on up, to the server
error middleware, as it would have.

Only the unversioned path of a served name is taken here, and only while no ``root_path`` is set; anything else
(a trailing slash, a versioned path :mod:`inference.versioned_paths` did not rewrite) goes through FastAPI.
"""

from __future__ import annotations

import inspect
import re

from kserve.errors import ModelNotReady
from kserve.protocol.dataplane import PredictorProtocol
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from inference.envelope import ready_body_headers
from inference.responses import encode_rest

PATH = re.compile(r"^/v2/models/(?P<name>[^/]+)/infer$")


class DirectInfer:
    """Set :attr:`dataplane` and :attr:`app` once KServe's server is built (:func:`inference.server.serve`);
    until then every request goes through FastAPI."""

    def __init__(self):
        self.dataplane = None
        self.app = None  # the FastAPI app: its exception handlers

    def model_of(self, scope) -> str | None:
        """The model name when this request is one to take, else None."""
        if self.dataplane is None or scope.get("root_path"):
            return None
        found = PATH.match(scope["path"])
        return found["name"] if found else None

    async def __call__(self, scope, model: str, body: bytes, headers: dict[bytes, bytes], receive, send) -> None:
        dataplane = self.dataplane
        request_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items()}
        try:
            if not await dataplane.model_ready(model, True):
                raise ModelNotReady(model)
            request, _ = dataplane.decode(body, request_headers, protocol_version=PredictorProtocol.REST_V2.value,
                                          model_name=model)
            response, response_headers = await dataplane.infer(model_name=model, request=request,
                                                               headers=request_headers)
            response, encoded_headers = dataplane.encode(model_name=model, response=response,
                                                         headers=request_headers, req_attributes={})
        except Exception as exc:  # noqa: BLE001 - mapped as Starlette's exception middleware maps it, or re-raised
            return await self._handled(exc, scope, receive, send)
        response_headers = {**response_headers, **encoded_headers}
        response_headers.pop("content-length", None)
        response_headers.pop("content-type", None)  # as KServe's endpoint does
        if not isinstance(response, bytes):  # a plain InferResponse's dict: FastAPI's fields, less the nulls
            response = encode_rest(response)
        raw = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in response_headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": ready_body_headers(raw, response)})
        await send({"type": "http.response.body", "body": response})

    async def _handled(self, exc: Exception, scope, receive, send) -> None:
        handler = None
        handlers = self.app.exception_handlers
        for cls in type(exc).__mro__:
            if cls is Exception:  # the server error middleware's, outside: it logs, answers 500 and re-raises
                break
            handler = handlers.get(cls)
            if handler is not None:
                break
        if handler is None:
            raise exc
        request = Request(scope, receive)
        if inspect.iscoroutinefunction(handler):
            response = await handler(request, exc)
        else:
            response = await run_in_threadpool(handler, request, exc)
        await response(scope, receive, send)
