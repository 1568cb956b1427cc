"""What the KServe request logger sends, read into numbers: one CloudEvent per request and one per
response, binary (``ce-*`` headers, the payload as body: what the KServe agent sends) or structured
(``application/cloudevents+json``); ``ce-type`` ``org.kubeflow.serving.inference.request`` or
``.response``; one ``ce-id`` shared by a request and its response; extensions
``inferenceservicename``, ``namespace``, ``component``, ``endpoint``. Bodies are V2 (Open Inference
Protocol) JSON or V1 (``instances`` / ``predictions``). The agent logs the body as the model server saw
it, so a missing value arrives as ``null`` (or a bare ``NaN`` from a Python client); both mean missing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
from cloudevents.exceptions import GenericException
from cloudevents.http import from_http

from bundle.observations import REQUEST, RESPONSE

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
TYPES = {REQUEST_TYPE: REQUEST, RESPONSE_TYPE: RESPONSE}
EXTENSIONS = ("inferenceservicename", "namespace", "component", "endpoint")
MAX_ID_LENGTH = 256


class BadEvent(ValueError):
    """An event the sidecar cannot use; ``reason`` is the metrics label, the message names what is wrong."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class InferenceEvent:
    id: str
    kind: str  # request | response
    body: dict
    extensions: dict[str, str]


def parse(headers: dict[str, str], body: bytes) -> InferenceEvent:
    """A logged inference event from an HTTP request's headers and body (both content modes)."""
    headers = {k.lower(): v for k, v in headers.items()}
    try:
        event = from_http(headers, body)
    except (GenericException, ValueError, TypeError, KeyError, AttributeError) as err:
        raise BadEvent("not_a_cloudevent", f"not a CloudEvent: {_short(err)}") from None
    ce_type = event.get("type")
    kind = TYPES.get(ce_type) if isinstance(ce_type, str) else None  # a structured envelope may hold any JSON
    if kind is None:
        raise BadEvent("event_type", f"ce-type {event.get('type')!r}: expected {REQUEST_TYPE} or {RESPONSE_TYPE}")
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id or len(event_id) > MAX_ID_LENGTH:
        raise BadEvent("event_id", f"ce-id must be 1 to {MAX_ID_LENGTH} characters")
    data = event.data
    if isinstance(data, (bytes, bytearray, str)):
        data = _body(bytes(data) if not isinstance(data, str) else data.encode())
    if not isinstance(data, dict):
        raise BadEvent("body", "the payload must be a V2 or V1 JSON object")
    extensions = {name: str(event.get(name)) for name in EXTENSIONS if event.get(name)}
    return InferenceEvent(event_id, kind, data, extensions)


# numpy dtypes of the V2 datatypes a binary tensor may hold (little-endian, as the protocol says)
BINARY_DTYPES = {"BOOL": "?", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "i1",
                 "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}


def _body(raw: bytes) -> dict:
    """A logged body: plain JSON, or the V2 binary tensor extension (a JSON header, then each tensor's raw
    bytes in order, sized by its ``binary_data_size`` parameter), which is what a transformer calling its
    predictor over REST with binary tensors sends, and so what the agent's logger forwards as it was."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        pass
    try:  # latin-1 maps each byte to one character, so the header's end is a byte offset
        header, end = json.JSONDecoder().raw_decode(raw.decode("latin-1"))
        header = json.loads(raw[:end])
    except (ValueError, UnicodeDecodeError) as err:
        raise BadEvent("body", f"the payload is not JSON: {_short(err)}") from None
    if not isinstance(header, dict):
        raise BadEvent("body", "the payload must be a V2 or V1 JSON object")
    offset = end
    for key in ("inputs", "outputs"):
        for t in header.get(key) or []:
            size = (t.get("parameters") or {}).get("binary_data_size") if isinstance(t, dict) else None
            if size is None:
                continue
            dtype = BINARY_DTYPES.get(t.get("datatype"))
            if not isinstance(size, int) or size < 0 or offset + size > len(raw) or dtype is None:
                raise BadEvent("body", f"binary tensor '{t.get('name')}': {size!r} bytes of "
                                       f"{t.get('datatype')!r} do not fit the {len(raw) - offset} sent")
            values = np.frombuffer(raw, dtype=dtype, count=size // np.dtype(dtype).itemsize, offset=offset)
            t["data"] = values.astype(np.float64).tolist()
            offset += size
    if offset != len(raw):
        raise BadEvent("body", f"{len(raw) - offset} bytes after the JSON header belong to no binary tensor")
    return header


def tensor(body: dict, kind: str, name: str | None) -> np.ndarray:
    """The 2-D float array of tensor ``name`` (a V2 input of a request, output of a response), or of a V1
    body's ``instances`` / ``predictions``. ``name`` None: the body's only tensor."""
    if "instances" in body or "predictions" in body:
        return _rows(body.get("instances" if kind == REQUEST else "predictions"), "V1 " + (
            "instances" if kind == REQUEST else "predictions"))
    key = "inputs" if kind == REQUEST else "outputs"
    tensors = body.get(key)
    if not isinstance(tensors, list) or not tensors:
        raise BadEvent("body", f"a V2 {kind} needs a non-empty '{key}' list")
    if name is None:
        if len(tensors) != 1:
            raise BadEvent("body", f"the V2 {kind} has {len(tensors)} {key}; which one is not configured")
        chosen = tensors[0]
    else:
        chosen = next((t for t in tensors if isinstance(t, dict) and t.get("name") == name), None)
        if chosen is None:
            names = [t.get("name") for t in tensors if isinstance(t, dict)]
            raise BadEvent("tensor_missing", f"the V2 {kind} has no {key[:-1]} '{name}' (it has {names})")
    if not isinstance(chosen, dict) or "data" not in chosen:
        raise BadEvent("body", f"V2 {key[:-1]} without 'data'")
    if chosen.get("datatype") == "BYTES":
        raise BadEvent("datatype", f"V2 {key[:-1]} '{chosen.get('name')}' is BYTES; a numeric tensor is needed")
    values = _flat(chosen["data"], f"{key[:-1]} '{chosen.get('name')}'")
    shape = chosen.get("shape")
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise BadEvent("shape", f"{key[:-1]} '{chosen.get('name')}': shape must be a list of sizes")
    if math.prod(shape) != values.size:
        raise BadEvent("shape", f"{key[:-1]} '{chosen.get('name')}': shape {shape} does not hold "
                                f"{values.size} values")
    return values.reshape(shape[0], -1) if len(shape) > 1 else values.reshape(-1, 1)


def _rows(value, where: str) -> np.ndarray:
    if not isinstance(value, list) or not value:
        raise BadEvent("body", f"{where} must be a non-empty list")
    flat = _flat(value, where)
    return flat.reshape(len(value), -1)


def _flat(value, where: str) -> np.ndarray:
    try:
        array = np.array(value, dtype=object)
        if array.dtype == object and array.ndim > 0 and any(isinstance(v, list) for v in array.ravel()):
            raise ValueError("ragged")
        flat = np.array([math.nan if v is None else float(v) for v in array.ravel()], dtype=np.float64)
        if np.isinf(flat).any():  # JSON's Infinity / 1e400: the log's strict JSON cannot hold it
            raise ValueError("infinite")
        return flat
    except (TypeError, ValueError):
        raise BadEvent("data", f"{where}: numbers (or null for missing) in a rectangular list are needed"
                       ) from None


def _short(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:200]
