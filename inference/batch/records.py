"""Batch input rows → the V2 inputs the transformer's codecs parse, so that every value goes through
the same checks as an online request.

A CSV cell is text. For a categorical feature it is sent as BYTES text (``"male"``, ``"asymptomatic"``,
``"1"``, ``"True"``), which the codec maps to its code by the schema's labels; for a numeric feature it
is sent as a number when it parses as one, else as the text itself (which the codec refuses as not a
number). An empty cell, or one of :data:`MISSING_TEXT`, is a missing value (JSON ``null`` online).
"""

from __future__ import annotations

import re

from kserve.protocol.infer_type import InferInput

from bundle.schema import CATEGORICAL, TabularSchema

MISSING_TEXT = frozenset({"", "na", "nan", "null", "none", "?"})  # case-insensitive; "?" marks missing in raw UCI files
# a codec message names the request's input and element; in a batch the row is named by its own column
_WHERE = re.compile(r"input '([^']+)' element \d+: ")


def cell(value) -> str | None:
    """One CSV cell as text, None when missing."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from a reader that parsed numbers
        return None
    text = str(value).strip()
    return None if text.lower() in MISSING_TEXT else text


def number(text: str | None):
    """A numeric cell: a float, None when missing, the text as is when it is not a number."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def tabular_inputs(schema: TabularSchema, columns: dict[str, list]) -> list[InferInput]:
    """One V2 input per feature (shape ``[N]``) from text ``columns`` by feature name."""
    inputs = []
    for feature in schema.features:
        texts = [cell(v) for v in columns[feature.name]]
        if feature.kind == CATEGORICAL:
            inputs.append(InferInput(feature.name, [len(texts)], "BYTES", texts))
        else:
            inputs.append(InferInput(feature.name, [len(texts)], "FP64", [number(t) for t in texts]))
    return inputs


def image_input(name: str, files: list[bytes]) -> list[InferInput]:
    """The image codec's one input: BYTES ``[N]`` of image files."""
    return [InferInput(name, [len(files)], "BYTES", list(files))]


def batch_message(message: str) -> str:
    """A codec message with the request's input/element prefix replaced by the feature name."""
    return _WHERE.sub(lambda m: f"{m.group(1)}: ", message, count=1)
