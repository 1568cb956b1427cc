"""heart-disease: 13 UCI features in, P(disease), prediction and risk level out.

Requests carry either one input per feature (``age`` … ``thal``, shape ``[N]``; numeric datatypes,
or BYTES text labels / codes for categoricals; JSON ``null`` = missing, allowed for nullable features
only) or one input ``features`` FP32/FP64 ``[N, 13]`` in ``feature_order`` with UCI codes and NaN for
missing. Everything is checked against the bundle's ``schema.json``.
"""

from __future__ import annotations

import math

import numpy as np

from inference.envelope import BadRequest
from inference.transformer import tensors

MATRIX_INPUT = "features"
RISK_LABELS = ("Low", "Medium", "High")
_RISK = np.array(RISK_LABELS, dtype=object)


class HeartDiseaseCodec:
    predictor_output = "predict_proba"
    class_labels = ("no disease", "disease")  # metric labels of prediction 0 and 1
    heavy = False  # parsing is cheap: no thread hop
    dispatch = "eager"  # the model answers in about a millisecond: overlap its calls with request handling

    def parse(self, inputs) -> tuple[str, np.ndarray]:
        return self.encode(inputs)

    @staticmethod
    def tensor(parsed: tuple[str, np.ndarray]) -> tuple[str, np.ndarray]:
        return parsed

    def __init__(self, schema: dict, settings):
        self.schema = schema
        self.order: list[str] = schema["feature_order"]
        self.features: dict = schema["features"]
        self.threshold = settings.threshold if settings.threshold is not None else float(schema["threshold"])
        risk = schema.get("risk_levels", {})
        self.risk_medium = settings.risk_medium if settings.risk_medium is not None else float(risk.get("medium", 0.3))
        self.risk_high = settings.risk_high if settings.risk_high is not None else float(risk.get("high", 0.6))
        if self.risk_medium > self.risk_high:
            raise ValueError(f"risk thresholds out of order: medium {self.risk_medium} > high {self.risk_high}")
        self.max_rows = settings.max_rows_per_request
        self.model_input = schema.get("model_input", {}).get("name", MATRIX_INPUT)

    # -- metadata ----------------------------------------------------------------------------------
    def input_types(self) -> list[dict]:
        per_feature = [{"name": n, "datatype": "FP64" if self.features[n]["type"] == "numeric" else "BYTES",
                        "shape": [-1]} for n in self.order]
        return per_feature + [{"name": MATRIX_INPUT, "datatype": "FP64", "shape": [-1, len(self.order)]}]

    def output_types(self) -> list[dict]:
        return [{"name": "probability", "datatype": "FP32", "shape": [-1]},
                {"name": "prediction", "datatype": "INT32", "shape": [-1]},
                {"name": "risk_level", "datatype": "BYTES", "shape": [-1]}]

    # -- request -> model tensor --------------------------------------------------------------------
    def encode(self, inputs) -> tuple[str, np.ndarray]:
        names = [t.name for t in inputs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise BadRequest("duplicate_input", f"input '{duplicates[0]}' appears more than once")
        unknown = [n for n in names if n not in self.features and n != MATRIX_INPUT]
        if unknown:
            raise BadRequest("unknown_input", f"unknown input '{unknown[0]}'; expected '{MATRIX_INPUT}' or the "
                                              f"features {', '.join(self.order)}")
        if MATRIX_INPUT in names:
            if len(names) > 1:
                extra = next(n for n in names if n != MATRIX_INPUT)
                raise BadRequest("extra_input", f"extra input '{extra}': send either '{MATRIX_INPUT}' or one "
                                                f"input per feature, not both")
            return self.model_input, self._matrix(inputs[0])
        missing = [n for n in self.order if n not in names]
        if missing:
            raise BadRequest("missing_input", f"missing input '{missing[0]}' (all of {', '.join(self.order)} "
                                              f"are required; send null for a missing nullable value)")
        by_name = {t.name: t for t in inputs}
        rows = None
        columns = []
        for name in self.order:
            tensor = by_name[name]
            shape = tensors.shape_of(tensor)
            if len(shape) != 1:
                raise BadRequest("shape", f"input '{name}': shape {shape} must be [N]")
            if rows is None:
                rows = shape[0]
                self._check_rows(name, rows)
            elif shape[0] != rows:
                raise BadRequest("shape", f"input '{name}': shape {shape} differs from the {rows} rows of "
                                          f"'{self.order[0]}'")
            columns.append(self._column(tensor))
        return self.model_input, np.stack(columns, axis=1)

    def _check_rows(self, name: str, rows: int) -> None:
        if rows < 1 or rows > self.max_rows:
            raise BadRequest("shape", f"input '{name}': {rows} rows; 1 to {self.max_rows} allowed")

    def _column(self, tensor) -> np.ndarray:
        name, spec = tensor.name, self.features[tensor.name]
        categorical = spec["type"] == "categorical"
        if tensor.datatype == "BYTES":
            if not categorical:
                raise BadRequest("datatype", f"input '{name}': numeric feature needs a numeric datatype, not BYTES")
            values = [tensors.as_text(tensor, i, v) for i, v in enumerate(tensors.elements(tensor))]
            return np.array([self._category(name, spec, i, v) for i, v in enumerate(values)], dtype=np.float64)
        if tensor.datatype not in tensors.NUMERIC:
            raise BadRequest("datatype", f"input '{name}': datatype {tensor.datatype} is not allowed; use a "
                                         f"numeric datatype" + (" or BYTES" if categorical else ""))
        out = []
        for i, value in enumerate(tensors.elements(tensor)):
            if value is None:
                out.append(self._missing(name, spec, i))
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BadRequest("datatype", f"input '{name}' element {i}: {value!r} is not a number")
            value = float(value)
            if math.isnan(value) or math.isinf(value):
                raise BadRequest("non_finite", f"input '{name}' element {i}: {value} is not allowed "
                                               f"(send null for a missing value)")
            out.append(self._code(name, spec, i, value) if categorical else self._in_range(name, spec, i, value))
        return np.array(out, dtype=np.float64)

    def _matrix(self, tensor) -> np.ndarray:
        shape = tensors.shape_of(tensor)
        if tensor.datatype not in ("FP32", "FP64"):
            raise BadRequest("datatype", f"input '{MATRIX_INPUT}': datatype {tensor.datatype}; FP32 or FP64 needed")
        if len(shape) != 2 or shape[1] != len(self.order):
            raise BadRequest("shape", f"input '{MATRIX_INPUT}': shape {shape} must be [N, {len(self.order)}]")
        self._check_rows(MATRIX_INPUT, shape[0])
        values = tensors.elements(tensor)
        if any(v is None or isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            bad = next(v for v in values if v is None or isinstance(v, bool) or not isinstance(v, (int, float)))
            raise BadRequest("datatype", f"input '{MATRIX_INPUT}': {bad!r} is not a number (NaN marks missing)")
        matrix = np.array(values, dtype=np.float64).reshape(shape)
        if np.isinf(matrix).any():
            row, col = np.argwhere(np.isinf(matrix))[0]
            raise BadRequest("non_finite", f"input '{MATRIX_INPUT}' row {row} ('{self.order[col]}'): inf")
        for col, name in enumerate(self.order):
            spec = self.features[name]
            for row, value in enumerate(matrix[:, col]):
                if math.isnan(value):
                    self._missing(name, spec, row, where=f"input '{MATRIX_INPUT}' row {row} ('{name}')")
                elif spec["type"] == "categorical":
                    self._code(name, spec, row, value, where=f"input '{MATRIX_INPUT}' row {row} ('{name}')")
                else:
                    self._in_range(name, spec, row, value, where=f"input '{MATRIX_INPUT}' row {row} ('{name}')")
        return matrix

    # -- one value ----------------------------------------------------------------------------------
    @staticmethod
    def _missing(name, spec, i, where=None) -> float:
        if not spec.get("nullable", False):
            raise BadRequest("missing_value", f"{where or f'input {name!r} element {i}'}: a value is required "
                                              f"('{name}' is not nullable)")
        return math.nan

    @staticmethod
    def _in_range(name, spec, i, value, where=None) -> float:
        low, high = spec.get("min", -math.inf), spec.get("max", math.inf)
        if not low <= value <= high:
            unit = f" {spec['unit']}" if spec.get("unit") else ""
            raise BadRequest("out_of_range", f"{where or f'input {name!r} element {i}'}: {value:g} is outside "
                                             f"[{low:g}, {high:g}]{unit}")
        return value

    @staticmethod
    def _code(name, spec, i, value, where=None) -> float:
        if value.is_integer() and str(int(value)) in spec["codes"]:
            return value
        allowed = ", ".join(f"{c} ({label})" for c, label in spec["codes"].items())
        raise BadRequest("unknown_category", f"{where or f'input {name!r} element {i}'}: unknown code {value:g} "
                                             f"for '{name}'; allowed: {allowed}")

    def _category(self, name, spec, i, text) -> float:
        if text is None or text.strip() == "":
            return self._missing(name, spec, i)
        code = spec["labels"].get(text.strip().lower())
        if code is None:
            allowed = ", ".join(f"'{label}'" for label in spec["codes"].values())
            raise BadRequest("unknown_category", f"input '{name}' element {i}: unknown category {text!r}; "
                                                 f"allowed: {allowed} or their codes")
        return float(code)

    # -- model outputs -> response ------------------------------------------------------------------
    def decode(self, outputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Response tensors, and each row's index into :attr:`class_labels` (for metrics)."""
        proba = np.asarray(outputs[self.predictor_output], dtype=np.float64)
        p = proba[:, 1] if proba.ndim == 2 else proba
        prediction = (p >= self.threshold).astype(np.int32)
        risk = (p >= self.risk_medium).astype(np.intp) + (p >= self.risk_high)  # medium <= high, checked at load
        return {"probability": p.astype(np.float32), "prediction": prediction, "risk_level": _RISK[risk]}, prediction
