"""The ``explanation`` output of a tabular workload: the predictor's per-feature attributions, one JSON
document per row, in the schema's clinical terms.

Each document::

    {"space": "log-odds", "base_value": -0.15, "model_output": 1.42, "probability": 0.81,
     "features": [{"name": "oldpeak", "title": "ST depression", "value": 2.3, "display": "2.3 mm",
                   "contribution": 0.41}, ...],            # every feature, largest |contribution| first
     "top": ["ST depression 2.3 mm raises the risk", ...]}  # the TOP_FEATURES strongest, in words

``model_output = base_value + sum(contributions)`` is the model's raw output in ``space`` (log-odds, or
probability for a forest), before any calibration; ``probability`` is the served one.
"""

from __future__ import annotations

import json
import math

import numpy as np

from bundle.schema import CATEGORICAL, TabularSchema

TOP_FEATURES = 3
MISSING = "not recorded"


def _display(feature, value: float) -> tuple[object, str]:
    """The value as JSON and in words."""
    if math.isnan(value):
        return None, MISSING
    if feature.kind == CATEGORICAL:
        return feature.codes.get(int(value), f"code {value:g}"), feature.codes.get(int(value), f"code {value:g}")
    return value, f"{value:g} {feature.unit}" if feature.unit else f"{value:g}"


def sentence(feature, display: str, contribution: float) -> str:
    effect = "raises" if contribution > 0 else "lowers"
    if feature.kind == CATEGORICAL and display != MISSING:
        return f"{feature.display_name}: {display} {effect} the risk"
    return f"{feature.display_name} {display} {effect} the risk"


def explain_rows(schema: TabularSchema, rows: np.ndarray, attributions: np.ndarray, base: np.ndarray,
                 space: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """BYTES ``[N]``: one JSON document per row."""
    documents = []
    for i, row in enumerate(rows):
        entries = []
        for feature, value, contribution in zip(schema.features, row, attributions[i], strict=True):
            shown, display = _display(feature, float(value))
            entries.append({"name": feature.name, "title": feature.display_name, "value": shown, "display": display,
                            "contribution": float(contribution)})
        entries.sort(key=lambda entry: -abs(entry["contribution"]))
        top = [sentence(schema.feature(e["name"]), e["display"], e["contribution"])
               for e in entries[:TOP_FEATURES] if e["contribution"] != 0]
        kind = space[i].decode() if isinstance(space[i], bytes) else str(space[i])
        documents.append(json.dumps({"space": kind, "base_value": float(base[i]),
                                     "model_output": float(base[i] + attributions[i].sum()),
                                     "probability": float(probability[i]), "features": entries, "top": top},
                                    separators=(",", ":")))
    return np.array(documents, dtype=object)
