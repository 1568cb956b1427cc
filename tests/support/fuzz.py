"""Mutations of a valid V2 JSON body, for the tests that fuzz the request path (never a 500)."""

from __future__ import annotations

import json
import random

BODY_MUTATIONS = ("flip", "cut", "insert", "json")
GARBAGE = [b"null", b"[]", b"{}", b"-1", b"1e999", b'"x"', b",", b"NaN"]
BAD_VALUES = [None, [], {}, -1, "x", [[1]], [1e308] * 3, True, {"binary_data_size": -5}]


def mutate(rng: random.Random, valid: bytes, action: str) -> bytes:
    """``valid`` with random bytes flipped, cut short, garbage inserted, or one input field replaced."""
    data = bytearray(valid)
    if action == "flip":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif action == "cut":
        data = data[:rng.randrange(len(data))]
    elif action == "insert":
        position = rng.randrange(len(data))
        data[position:position] = rng.choice(GARBAGE)
    elif action == "json":
        document = json.loads(valid)
        spec = document["inputs"][rng.randrange(len(document["inputs"]))]
        spec[rng.choice(["shape", "datatype", "data", "name", "parameters"])] = rng.choice(BAD_VALUES)
        data = json.dumps(document).encode()
    else:
        raise ValueError(f"unknown mutation {action!r}")
    return bytes(data)


# -- gRPC ModelInferRequest mutations -------------------------------------------------------------------

GRPC_MUTATIONS = ("shape", "datatype", "raw_cut", "raw_grow", "raw_count", "contents", "name", "duplicate",
                  "drop", "output", "raw_to_contents")
DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
             "FP64", "BYTES", "FP99", "", "fp32"]
DIMENSIONS = [0, 1, 2, 13, -1, -7, 2 ** 31, 2 ** 62, 10 ** 9]
CONTENT_FIELDS = {"bool_contents": [True], "int_contents": [1, 2], "int64_contents": [3], "uint_contents": [4],
                  "uint64_contents": [5], "fp32_contents": [0.5], "fp64_contents": [1.5, float("nan")],
                  "bytes_contents": [b"\xff\x00", b"x"]}


def mutate_grpc(rng: random.Random, valid, action: str):
    """A copy of the ``ModelInferRequest`` ``valid`` with one thing about its tensors broken."""
    request = type(valid)()
    request.CopyFrom(valid)
    position = rng.randrange(len(request.inputs))
    tensor = request.inputs[position]
    if action == "shape":
        del tensor.shape[:]
        tensor.shape.extend(rng.choice(DIMENSIONS) for _ in range(rng.randint(0, 4)))
    elif action == "datatype":
        tensor.datatype = rng.choice(DATATYPES)
    elif action in ("raw_cut", "raw_grow") and request.raw_input_contents:
        raw = request.raw_input_contents[position]
        request.raw_input_contents[position] = raw[:rng.randrange(len(raw) + 1)] if action == "raw_cut" else \
            raw + bytes(rng.randrange(256) for _ in range(rng.randint(1, 9)))
    elif action == "raw_count":
        if request.raw_input_contents and rng.random() < 0.5:
            del request.raw_input_contents[rng.randrange(len(request.raw_input_contents))]
        else:
            request.raw_input_contents.append(b"\x00" * rng.randint(0, 16))
    elif action == "contents":
        field = rng.choice(sorted(CONTENT_FIELDS))
        getattr(tensor.contents, field).extend(CONTENT_FIELDS[field])
    elif action == "raw_to_contents" and request.raw_input_contents:
        del request.raw_input_contents[:]
    elif action == "name":
        tensor.name = rng.choice(["", "x", "features", "image", "input", "age", "\u00e9" * 3])
    elif action == "duplicate":
        request.inputs.append(tensor)
        if request.raw_input_contents:
            request.raw_input_contents.append(request.raw_input_contents[position])
    elif action == "drop" and len(request.inputs) > 1:
        del request.inputs[position]
        if request.raw_input_contents:
            del request.raw_input_contents[position]
    elif action == "output":
        request.outputs.add(name=rng.choice(["", "survival", "logits", "probability"]))
    return request
