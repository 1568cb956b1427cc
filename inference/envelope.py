"""Checks on the raw V2 REST request, before KServe's decoder sees it.

KServe decodes the body into an ``InferRequest``; a few malformed bodies (binary-data extension
with a bad ``Inference-Header-Content-Length``, truncated binary tensors, a JSON part that is not
an object) would surface there as a 500. This ASGI middleware answers them with a 400 that names
the problem, enforces the body size limit, and re-encodes raw non-UTF-8 ``BYTES`` elements (image
files sent with the binary-data extension) as base64 strings, the JSON form of the same input, since
KServe's REST decoder only keeps UTF-8 text for ``BYTES``.
"""

from __future__ import annotations

import base64
import math
import struct

import orjson

from inference import metrics
from inference.reasons import Reason, checked

HEADER = b"inference-header-content-length"
DATATYPE_SIZES = {"BOOL": 1, "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8, "INT8": 1, "INT16": 2,
                  "INT32": 4, "INT64": 8, "FP16": 2, "FP32": 4, "FP64": 8, "BYTES": None}
BASE64_PARAMETER = "clinops_base64"


class BadRequest(Exception):
    def __init__(self, reason: Reason, message: str):
        super().__init__(message)
        self.kind = checked(reason)
        self.message = message


def split_bytes_elements(raw: bytes, name: str) -> list[bytes]:
    """Length-prefixed ``BYTES`` elements of the V2 binary format; a 400 when truncated."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise BadRequest(Reason.BINARY, f"input '{name}': truncated BYTES tensor (length prefix cut off)")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise BadRequest(Reason.BINARY, f"input '{name}': truncated BYTES tensor (element of {length} bytes "
                                            f"with {len(raw) - offset} left)")
        elements.append(raw[offset:offset + length])
        offset += length
    return elements


def _shape_size(spec: dict, name: str) -> int:
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise BadRequest(Reason.SHAPE, f"input '{name}': shape must be a list of non-negative integers, got {shape!r}")
    return math.prod(shape)


def nesting_over(data, limit: int) -> bool:
    """Whether ``data`` nests lists more than ``limit`` levels deep (a flat list is one level); walked
    level by level, so no depth can exhaust the stack."""
    level, frontier = 0, [data]
    while frontier:
        level += 1
        if level > limit:
            return True
        deeper = []
        for items in frontier:
            deeper += [item for item in items if type(item) is list]
        frontier = deeper
    return False


def _check_parameters(parameters, where: str) -> None:
    """V2 ``parameters``: an object of strings, numbers and booleans (or absent)."""
    if parameters is None:
        return
    if not isinstance(parameters, dict):
        raise BadRequest(Reason.JSON, f"{where}'parameters' must be an object")
    for key, value in parameters.items():
        if not isinstance(value, (str, int, float)):  # bool is an int
            raise BadRequest(Reason.JSON, f"{where}parameter '{key}' must be a string, number or boolean, "
                                          f"not {type(value).__name__}")


def check_json_part(document, binary: bool) -> None:
    if not isinstance(document, dict):
        raise BadRequest(Reason.JSON, "the request body must be a JSON object with an 'inputs' list")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest(Reason.MISSING_INPUT, "the request has no 'inputs' (a non-empty list is required)")
    if document.get("id") is not None and not isinstance(document["id"], str):
        raise BadRequest(Reason.JSON, "the request's 'id' must be a string")
    _check_parameters(document.get("parameters"), "the request's ")
    outputs = document.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                    for o in outputs):
            raise BadRequest(Reason.JSON, "'outputs' must be a list of objects with a string 'name'")
        for output in outputs:
            _check_parameters(output.get("parameters"), f"output '{output['name']}': ")
    for position, spec in enumerate(inputs):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise BadRequest(Reason.JSON, f"inputs[{position}] must be an object with a string 'name'")
        name = spec["name"]
        datatype = spec.get("datatype")
        if not isinstance(datatype, str) or datatype not in DATATYPE_SIZES:
            raise BadRequest(Reason.DATATYPE, f"input '{name}': unknown datatype {datatype!r}")
        _shape_size(spec, name)
        data = spec.get("data")
        if data is not None and type(data) is not list:
            raise BadRequest(Reason.DATA, f"input '{name}': 'data' must be a list, not {type(data).__name__}")
        if type(data) is list and nesting_over(data, max(1, len(spec["shape"]))):
            raise BadRequest(Reason.NESTING, f"input '{name}': data nested deeper than shape {spec['shape']} allows "
                                             f"({max(1, len(spec['shape']))} levels at most)")
        parameters = spec.get("parameters")
        _check_parameters(parameters, f"input '{name}': ")
        has_binary = bool(parameters) and "binary_data_size" in parameters
        if data is None and not (binary and has_binary):
            raise BadRequest(Reason.MISSING_DATA, f"input '{name}': no 'data'")


def rewrite_binary(body: bytes, json_length: int) -> tuple[bytes, int]:
    """Validate a binary-extension body; base64 non-UTF-8 BYTES elements. Returns (body, json_length)."""
    if json_length > len(body):
        raise BadRequest(Reason.BINARY, f"Inference-Header-Content-Length {json_length} exceeds the body "
                                        f"({len(body)} bytes)")
    try:
        document = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError as err:
        raise BadRequest(Reason.JSON, f"the JSON part of the request is not valid JSON: {err}") from None
    check_json_part(document, binary=True)
    offset, chunks, changed = json_length, [], False
    for spec in document["inputs"]:
        parameters = spec.get("parameters") or {}
        if spec.get("data") is not None or "binary_data_size" not in parameters:
            continue
        name, size = spec["name"], parameters["binary_data_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadRequest(Reason.BINARY, f"input '{name}': binary_data_size must be a non-negative integer")
        if offset + size > len(body):
            raise BadRequest(Reason.BINARY, f"input '{name}': binary_data_size {size} runs past the end of the body")
        raw = body[offset:offset + size]
        offset += size
        itemsize, count = DATATYPE_SIZES[spec["datatype"]], _shape_size(spec, name)
        if itemsize is not None:
            if size != count * itemsize:
                raise BadRequest(Reason.SHAPE, f"input '{name}': {size} bytes do not hold shape {spec['shape']} of "
                                               f"{spec['datatype']} ({count * itemsize} bytes)")
            chunks.append(raw)
            continue
        elements = split_bytes_elements(raw, name)
        if len(elements) != count:
            raise BadRequest(Reason.SHAPE, f"input '{name}': {len(elements)} BYTES elements for shape {spec['shape']}")
        try:
            for element in elements:
                element.decode("utf-8")
            chunks.append(raw)
        except UnicodeDecodeError:
            spec["data"] = [base64.b64encode(e).decode("ascii") for e in elements]
            parameters.pop("binary_data_size")
            parameters[BASE64_PARAMETER] = True
            changed = True
    if offset != len(body):
        raise BadRequest(Reason.BINARY, f"{len(body) - offset} bytes after the last binary input are unaccounted for")
    if not changed:
        return body, json_length
    header = orjson.dumps(document)
    return header + b"".join(chunks), len(header)


class EnvelopeMiddleware:
    """ASGI middleware for ``POST .../infer``: size limit, envelope checks, 400 on failure."""

    def __init__(self, app, max_body_bytes: int, models: frozenset[str] = frozenset(), direct=None):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.models = models  # metric labels only for served names: a fuzzer must not grow the registry
        self.direct = direct  # inference.direct_infer.DirectInfer: checked requests past FastAPI's router

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/infer"):
            return await self.app(scope, receive, send)
        model = model_from_path(scope["path"])
        model = model if model in self.models else "unknown"
        headers = dict(scope.get("headers") or [])
        try:
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                raise BadRequest(Reason.BODY_TOO_LARGE, f"request body of {int(declared)} bytes exceeds the limit of "
                                                        f"{self.max_body_bytes} bytes")
            body = await self._read(receive)
            new_body, new_headers = self._check(body, headers)
        except BadRequest as err:
            if err.kind is Reason.BODY_TOO_LARGE:
                await self._drain(receive)
            metrics.REJECTED.labels(model, err.kind.value).inc()
            metrics.REQUESTS.labels(model, "400").inc()
            return await reply(send, 400, {"error": err.message})
        scope = dict(scope, headers=[(k, v) for k, v in new_headers.items()])
        direct = self.direct.model_of(scope) if self.direct is not None else None
        if direct is not None:
            return await self.direct(scope, direct, new_body, new_headers, receive, send)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": new_body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, _with_body_headers(send))

    async def _drain(self, receive) -> None:
        """Read (and drop) a moderately oversized body so the client sees the 400, not a reset."""
        drained = 0
        while drained <= 4 * self.max_body_bytes:
            message = await receive()
            drained += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body"):
                return

    async def _read(self, receive) -> bytes:
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest(Reason.BODY, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BadRequest(Reason.BODY_TOO_LARGE, f"request body exceeds the limit of {self.max_body_bytes} bytes")
            parts.append(chunk)
            if not message.get("more_body"):
                return b"".join(parts)

    def _check(self, body: bytes, headers: dict) -> tuple[bytes, dict]:
        if not body:
            raise BadRequest(Reason.JSON, "the request body is empty")
        length = headers.get(HEADER)
        if length is None:
            try:
                document = orjson.loads(body)
            except orjson.JSONDecodeError as err:
                raise BadRequest(Reason.JSON, f"the request body is not valid JSON: {err}") from None
            check_json_part(document, binary=False)
            # On to KServe as the binary extension with no binary part (its JSON is the whole body), whatever
            # content type the client named: KServe then builds its InferRequest from these bytes, already
            # checked here, instead of FastAPI parsing the JSON again and validating it with pydantic, about
            # 6% of a one-row request's CPU (the same decoder the binary extension takes).
            headers = dict(headers)
            headers[b"content-type"] = b"application/octet-stream"
            headers[HEADER] = str(len(body)).encode()
            return body, headers
        text = length.decode("latin-1").strip()
        if not text.isdigit():
            raise BadRequest(Reason.BINARY, f"Inference-Header-Content-Length must be a non-negative integer, "
                                            f"got {text!r}")
        new_body, new_length = rewrite_binary(body, int(text))
        headers = dict(headers)
        headers[HEADER] = str(new_length).encode()
        headers[b"content-length"] = str(len(new_body)).encode()
        headers[b"content-type"] = b"application/octet-stream"
        return new_body, headers


def ready_body_headers(headers, body: bytes) -> list[tuple[bytes, bytes]]:
    """The headers of a response body KServe passes through as ready bytes: its length, and ``content-type``
    JSON unless it is the binary extension's (``Inference-Header-Content-Length``) or already named."""
    headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    names = {k.lower() for k, _ in headers}
    if b"content-type" not in names and HEADER not in names:
        headers.append((b"content-type", b"application/json"))
    return headers + [(b"content-length", str(len(body)).encode())]


def _with_body_headers(send):
    """``send`` that completes the headers of bodies KServe passes through as ready bytes.

    When a model's ``to_rest`` returns bytes (binary outputs, or :mod:`inference.responses`' JSON),
    KServe's endpoint sends them without ``content-type`` or ``content-length``; a JSON body (no
    ``Inference-Header-Content-Length``) gets both here, so clients see what FastAPI would have sent.
    """
    held = None

    async def wrapped(message):
        nonlocal held
        if message["type"] == "http.response.start":
            names = {k.lower() for k, _ in message.get("headers", ())}
            if b"content-type" not in names and HEADER not in names:
                held = message
                return None
        elif held is not None and message["type"] == "http.response.body":
            start, held = held, None
            if not message.get("more_body"):
                start = dict(start, headers=ready_body_headers(start.get("headers", ()), message.get("body", b"")))
            await send(start)
        return await send(message)

    return wrapped


def model_from_path(path: str) -> str:
    parts = path.strip("/").split("/")
    return parts[2] if len(parts) > 2 and parts[1] == "models" else "unknown"


async def reply(send, status: int, payload: dict, headers: tuple = ()) -> None:
    """An ASGI JSON answer, sent without the app."""
    body = orjson.dumps(payload)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})
