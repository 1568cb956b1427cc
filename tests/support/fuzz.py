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
