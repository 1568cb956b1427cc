"""heart-disease: 13 UCI features in, P(disease), prediction and risk level out.

Requests carry either one input per feature (``age`` … ``thal``, shape ``[N]``; numeric datatypes,
or BYTES text labels / codes for categoricals; JSON ``null`` = missing, allowed for nullable features
only) or one input ``features`` FP32/FP64 ``[N, 13]`` in ``feature_order`` with UCI codes and NaN for
missing. Everything is checked against the bundle's typed schema (:class:`bundle.schema.TabularSchema`).
"""

from __future__ import annotations

import math

import numpy as np

from bundle.schema import CATEGORICAL, NUMERIC, Feature, TabularSchema
from inference.envelope import BadRequest
from inference.reasons import Reason
from inference.transformer import tensors
from inference.transformer.calibration import served_probability
from inference.transformer.tabular_explanation import explain_rows

MATRIX_INPUT = "features"
RISK_LABELS = ("Low", "Medium", "High")
_RISK = np.array(RISK_LABELS, dtype=object)


class HeartDiseaseCodec:
    """The codec of tabular workloads: records checked feature by feature against the schema."""

    predictor_output = "predict_proba"
    heavy = False  # parsing is cheap: no thread hop
    dispatch = "eager"  # the model answers in about a millisecond: overlap its calls with request handling
    # a client output computed only when requested -> the predictor outputs it is made of
    explain_outputs = {"explanation": ("attributions", "base_value", "attribution_space")}

    def parse(self, inputs) -> np.ndarray:
        return self.encode(inputs)

    @staticmethod
    def tensor(parsed: np.ndarray) -> np.ndarray:
        return parsed

    def __init__(self, schema: TabularSchema, settings, calibration=None):
        self.schema = schema
        self.calibration = calibration  # bundle.calibration.Calibration: the served probability's map
        self.order: list[str] = list(schema.feature_order)
        self.features: dict[str, Feature] = {feature.name: feature for feature in schema.features}
        self.class_labels = schema.classes  # metric labels of prediction 0 and 1
        self.threshold = settings.threshold if settings.threshold is not None else schema.threshold
        self.risk_medium = settings.risk_medium if settings.risk_medium is not None else schema.risk_medium
        self.risk_high = settings.risk_high if settings.risk_high is not None else schema.risk_high
        if self.risk_medium > self.risk_high:
            raise ValueError(f"risk thresholds out of order: medium {self.risk_medium} > high {self.risk_high}")
        self.max_rows = settings.max_rows_per_request
        self.model_input = schema.model_input  # the predictor's input tensor

    # -- metadata ----------------------------------------------------------------------------------
    def input_types(self) -> list[dict]:
        per_feature = [{"name": n, "datatype": "FP64" if self.features[n].kind == NUMERIC else "BYTES",
                        "shape": [-1]} for n in self.order]
        return per_feature + [{"name": MATRIX_INPUT, "datatype": "FP64", "shape": [-1, len(self.order)]}]

    def output_types(self) -> list[dict]:
        return [{"name": "probability", "datatype": "FP32", "shape": [-1]},
                {"name": "prediction", "datatype": "INT32", "shape": [-1]},
                {"name": "risk_level", "datatype": "BYTES", "shape": [-1]},
                {"name": "explanation", "datatype": "BYTES", "shape": [-1]}]  # on request: JSON per row

    # -- request -> model tensor --------------------------------------------------------------------
    def encode(self, inputs) -> np.ndarray:
        """The model's input rows ``[N, len(features)]`` in feature order (NaN = missing)."""
        names = [t.name for t in inputs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise BadRequest(Reason.DUPLICATE_INPUT, f"input '{duplicates[0]}' appears more than once")
        unknown = [n for n in names if n not in self.features and n != MATRIX_INPUT]
        if unknown:
            raise BadRequest(Reason.UNKNOWN_INPUT, f"unknown input '{unknown[0]}'; expected '{MATRIX_INPUT}' or the "
                                                   f"features {', '.join(self.order)}")
        if MATRIX_INPUT in names:
            if len(names) > 1:
                extra = next(n for n in names if n != MATRIX_INPUT)
                raise BadRequest(Reason.EXTRA_INPUT, f"extra input '{extra}': send either '{MATRIX_INPUT}' or one "
                                                     f"input per feature, not both")
            return self._matrix(inputs[0])
        missing = [n for n in self.order if n not in names]
        if missing:
            raise BadRequest(Reason.MISSING_INPUT, f"missing input '{missing[0]}' (all of {', '.join(self.order)} "
                                                   f"are required; send null for a missing nullable value)")
        by_name = {t.name: t for t in inputs}
        rows = None
        columns = []
        for name in self.order:
            tensor = by_name[name]
            shape = tensors.shape_of(tensor)
            if len(shape) != 1:
                raise BadRequest(Reason.SHAPE, f"input '{name}': shape {shape} must be [N]")
            if rows is None:
                rows = shape[0]
                self._check_rows(name, rows)
            elif shape[0] != rows:
                raise BadRequest(Reason.SHAPE, f"input '{name}': shape {shape} differs from the {rows} rows of "
                                               f"'{self.order[0]}'")
            columns.append(self._column(tensor))
        return np.stack(columns, axis=1)

    def _check_rows(self, name: str, rows: int) -> None:
        if rows < 1 or rows > self.max_rows:
            raise BadRequest(Reason.SHAPE, f"input '{name}': {rows} rows; 1 to {self.max_rows} allowed")

    def _column(self, tensor) -> np.ndarray:
        name, feature = tensor.name, self.features[tensor.name]
        categorical = feature.kind == CATEGORICAL
        if tensor.datatype == "BYTES":
            if not categorical:
                raise BadRequest(Reason.DATATYPE, f"input '{name}': numeric feature needs a numeric datatype, not BYTES")
            values = [tensors.as_text(tensor, i, v) for i, v in enumerate(tensors.elements(tensor))]
            return np.array([self._category(feature, i, v) for i, v in enumerate(values)], dtype=np.float64)
        if tensor.datatype not in tensors.NUMERIC:
            raise BadRequest(Reason.DATATYPE, f"input '{name}': datatype {tensor.datatype} is not allowed; use a "
                                              f"numeric datatype" + (" or BYTES" if categorical else ""))
        out = []
        for i, value in enumerate(tensors.elements(tensor)):
            if value is None:
                out.append(self._missing(feature, i))
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BadRequest(Reason.DATATYPE, f"input '{name}' element {i}: {value!r} is not a number")
            value = float(value)
            if math.isnan(value) or math.isinf(value):
                raise BadRequest(Reason.NON_FINITE, f"input '{name}' element {i}: {value} is not allowed "
                                                    f"(send null for a missing value)")
            out.append(self._code(feature, i, value) if categorical else self._in_range(feature, i, value))
        return np.array(out, dtype=np.float64)

    def _matrix(self, tensor) -> np.ndarray:
        shape = tensors.shape_of(tensor)
        if tensor.datatype not in ("FP32", "FP64"):
            raise BadRequest(Reason.DATATYPE, f"input '{MATRIX_INPUT}': datatype {tensor.datatype}; FP32 or FP64 needed")
        if len(shape) != 2 or shape[1] != len(self.order):
            raise BadRequest(Reason.SHAPE, f"input '{MATRIX_INPUT}': shape {shape} must be [N, {len(self.order)}]")
        self._check_rows(MATRIX_INPUT, shape[0])
        values = tensors.elements(tensor)
        if any(v is None or isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            bad = next(v for v in values if v is None or isinstance(v, bool) or not isinstance(v, (int, float)))
            raise BadRequest(Reason.DATATYPE, f"input '{MATRIX_INPUT}': {bad!r} is not a number (NaN marks missing)")
        matrix = np.array(values, dtype=np.float64).reshape(shape)
        if np.isinf(matrix).any():
            row, col = np.argwhere(np.isinf(matrix))[0]
            raise BadRequest(Reason.NON_FINITE, f"input '{MATRIX_INPUT}' row {row} ('{self.order[col]}'): inf")
        for col, name in enumerate(self.order):
            feature = self.features[name]
            for row, value in enumerate(matrix[:, col]):
                if math.isnan(value):
                    self._missing(feature, row, where=f"input '{MATRIX_INPUT}' row {row} ('{name}')")
                elif feature.kind == CATEGORICAL:
                    self._code(feature, row, value, where=f"input '{MATRIX_INPUT}' row {row} ('{name}')")
                else:
                    self._in_range(feature, row, value, where=f"input '{MATRIX_INPUT}' row {row} ('{name}')")
        return matrix

    # -- one value ----------------------------------------------------------------------------------
    @staticmethod
    def _missing(feature, i, where=None) -> float:
        if not feature.nullable:
            raise BadRequest(Reason.MISSING_VALUE, f"{where or f'input {feature.name!r} element {i}'}: a value is "
                                                   f"required ('{feature.name}' is not nullable)")
        return math.nan

    @staticmethod
    def _in_range(feature, i, value, where=None) -> float:
        low = -math.inf if feature.min is None else feature.min
        high = math.inf if feature.max is None else feature.max
        if not low <= value <= high:
            unit = f" {feature.unit}" if feature.unit else ""
            raise BadRequest(Reason.OUT_OF_RANGE, f"{where or f'input {feature.name!r} element {i}'}: {value:g} is "
                                                  f"outside [{low:g}, {high:g}]{unit}")
        return value

    @staticmethod
    def _code(feature, i, value, where=None) -> float:
        if value.is_integer() and int(value) in feature.codes:
            return value
        allowed = ", ".join(f"{c} ({label})" for c, label in feature.codes.items())
        raise BadRequest(Reason.UNKNOWN_CATEGORY, f"{where or f'input {feature.name!r} element {i}'}: unknown code "
                                                  f"{value:g} for '{feature.name}'; allowed: {allowed}")

    def _category(self, feature, i, text) -> float:
        if text is None or text.strip() == "":
            return self._missing(feature, i)
        code = feature.labels.get(text.strip().lower())
        if code is None:
            allowed = ", ".join(f"'{label}'" for label in feature.codes.values())
            raise BadRequest(Reason.UNKNOWN_CATEGORY, f"input '{feature.name}' element {i}: unknown category "
                                                      f"{text!r}; allowed: {allowed} or their codes")
        return float(code)

    # -- model outputs -> response ------------------------------------------------------------------
    def decode(self, outputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Response tensors, and each row's index into :attr:`class_labels` (for metrics)."""
        proba = np.asarray(outputs[self.predictor_output], dtype=np.float64)
        p = served_probability(proba[:, 1] if proba.ndim == 2 else proba, self.calibration)
        prediction = (p >= self.threshold).astype(np.int32)
        risk = (p >= self.risk_medium).astype(np.intp) + (p >= self.risk_high)  # medium <= high, checked at load
        return {"probability": p.astype(np.float32), "prediction": prediction, "risk_level": _RISK[risk]}, prediction

    def explain(self, rows: np.ndarray, outputs: dict[str, np.ndarray], served: dict[str, np.ndarray],
                wanted: tuple[str, ...] = ("explanation",), text: bool = True) -> dict:
        """The ``explanation`` output from the predictor's attributions (:mod:`.tabular_explanation`)."""
        return {"explanation": explain_rows(self.schema, rows, outputs["attributions"], outputs["base_value"],
                                            outputs["attribution_space"], served["probability"])}
