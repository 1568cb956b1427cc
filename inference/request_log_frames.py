"""The frames the transformer hands its request-log agent (:mod:`inference.request_log_agent`) over a Unix
socket pair, and the reports the agent sends back.

A call's frame: ``<II`` (header length, data length), a JSON header
``[[name, dtype, shape], ...]`` for the inputs then ``[...]`` for the outputs, and the arrays' bytes in that
order. It is built as a list of buffers for one ``sendmsg``: the arrays are not copied. A report is one
JSON object per line: the agent's running totals (``sent`` by event type, ``dropped`` by reason, ``done``
calls and bytes taken off its queue), which the transformer turns into its own metrics.
"""

from __future__ import annotations

import struct

import numpy as np
import orjson

PREFIX = struct.Struct("<II")
NUMERIC = "biuf"  # bool, integers, floats: what a V2 tensor of numbers holds


def events_per_call(mode: str) -> int:
    """CloudEvents a logged call makes in a KServe logger ``mode``: request and response, or one of them."""
    return 2 if mode == "all" else 1


def encode(inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> tuple[list, int, int]:
    """A call's frame as buffers for ``sendmsg``, its length in bytes, and its arrays' bytes."""
    arrays = [np.ascontiguousarray(a) for a in (*inputs.values(), *outputs.values())]
    names = (*inputs, *outputs)
    for name, a in zip(names, arrays, strict=True):
        if a.dtype.kind not in NUMERIC:
            raise TypeError(f"request-log frame: {name} is {a.dtype}, not numbers")
    specs = [[name, a.dtype.str, list(a.shape)] for name, a in zip(names, arrays, strict=True)]
    header = orjson.dumps([specs[:len(inputs)], specs[len(inputs):]])
    data = [memoryview(a).cast("B") for a in arrays if a.nbytes]
    size = sum(len(d) for d in data)
    return [PREFIX.pack(len(header), size), header, *data], PREFIX.size + len(header) + size, size


def decode(header: bytes, data: bytes) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A frame's header and data back into its inputs and outputs (the arrays read-only views of ``data``)."""
    parts, offset = [], 0
    for specs in orjson.loads(header):
        arrays = {}
        for name, dtype, shape in specs:
            dt = np.dtype(dtype)
            if dt.kind not in NUMERIC:
                raise ValueError(f"request-log frame: {name} is {dt}, not numbers")
            count = int(np.prod(shape, dtype=np.int64))
            arrays[name] = (np.frombuffer(data, dt, count, offset).reshape(shape) if count
                            else np.empty(shape, dt))
            offset += count * dt.itemsize
        parts.append(arrays)
    if offset != len(data):
        raise ValueError(f"request-log frame: {len(data)} data bytes for {offset} described")
    return parts[0], parts[1]
