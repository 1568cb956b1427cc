"""Reading client tensors element by element, so that every problem names the input and the element."""

from __future__ import annotations

import base64
import binascii
import math

import numpy as np
from kserve.protocol.infer_type import InferInput

from inference.envelope import BASE64_PARAMETER, BadRequest, split_bytes_elements
from inference.reasons import Reason

NUMERIC = {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"}


def _flatten(data) -> list:
    if not isinstance(data, (list, tuple)):
        return [data]
    flat: list = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, (list, tuple)) else [item])
    return flat


def shape_of(tensor: InferInput) -> list[int]:
    return [int(d) for d in tensor.shape]


def elements(tensor: InferInput) -> list:
    """The flat list of elements: numbers or None for numeric tensors, str/bytes/None for BYTES."""
    name, shape = tensor.name, shape_of(tensor)
    count = math.prod(shape)
    raw = tensor._raw_data
    if raw is not None:  # gRPC raw_input_contents or REST binary extension
        if tensor.datatype == "BYTES":
            values = split_bytes_elements(bytes(raw), name)
        else:
            itemsize = np.dtype(_np_dtype(tensor.datatype)).itemsize
            if len(raw) != count * itemsize:
                raise BadRequest(Reason.SHAPE, f"input '{name}': {len(raw)} bytes do not hold shape {shape} of "
                                               f"{tensor.datatype}")
            values = np.frombuffer(raw, dtype=_np_dtype(tensor.datatype)).tolist()
    else:
        values = _flatten(tensor.data if tensor.data is not None else [])
    if len(values) != count:
        raise BadRequest(Reason.SHAPE, f"input '{name}': {len(values)} elements do not fit shape {shape}")
    return values


def _np_dtype(datatype: str):
    return {"UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64, "INT8": np.int8,
            "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16, "FP32": np.float32,
            "FP64": np.float64, "BOOL": np.bool_}[datatype]


def is_base64(tensor: InferInput) -> bool:
    parameters = tensor.parameters or {}
    value = parameters.get(BASE64_PARAMETER) if hasattr(parameters, "get") else None
    return bool(getattr(value, "bool_param", value))


def as_bytes(tensor: InferInput, index: int, value, base64_text: bool) -> bytes:
    """One BYTES element as bytes; JSON strings are base64 when ``base64_text``."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if not isinstance(value, str):
        raise BadRequest(Reason.DATATYPE, f"input '{tensor.name}' element {index}: expected a string, got "
                                          f"{type(value).__name__}")
    if not base64_text:
        return value.encode("utf-8")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(Reason.BASE64, f"input '{tensor.name}' element {index}: not valid base64") from None


def as_text(tensor: InferInput, index: int, value) -> str | None:
    if value is None:
        return None
    data = as_bytes(tensor, index, value, base64_text=is_base64(tensor)) if not isinstance(value, str) or \
        is_base64(tensor) else value.encode("utf-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(Reason.ENCODING, f"input '{tensor.name}' element {index}: not UTF-8 text") from None
