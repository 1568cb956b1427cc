import math

import numpy as np
import pytest
from kserve.protocol.infer_type import InferInput

from bundle.schema import CategoricalFeature, NumericFeature, TabularSchema
from inference.envelope import BadRequest
from inference.reasons import Reason
from inference.transformer.heart_disease import HeartDiseaseCodec
from inference.transformer.settings import TransformerSettings

pytestmark = pytest.mark.unit

ROW = {"age": 63, "sex": 1, "cp": 4, "trestbps": 145, "chol": 233, "fbs": 1, "restecg": 2, "thalach": 150,
       "exang": 0, "oldpeak": 2.3, "slope": 3, "ca": 0, "thal": 6}


@pytest.fixture()
def codec(heart_schema):
    return HeartDiseaseCodec(heart_schema, TransformerSettings())


def per_feature(overrides=None, drop=(), datatypes=None):
    row = {**ROW, **(overrides or {})}
    inputs = []
    for name, value in row.items():
        if name in drop:
            continue
        datatype = (datatypes or {}).get(name) or ("BYTES" if isinstance(value, str) else "FP64")
        inputs.append(InferInput(name, [1], datatype, [value]))
    return inputs


def test_codes_and_text_labels_give_the_same_row_in_feature_order(codec, heart_schema):
    by_code = codec.encode(per_feature())
    by_label = codec.encode(per_feature({"sex": "Male", "cp": "asymptomatic", "fbs": "true",
                                            "restecg": "lv hypertrophy", "slope": "downsloping",
                                            "thal": "fixed defect", "exang": "no", "ca": "0"}))
    assert codec.model_input == "features" and by_code.shape == (1, 13)
    np.testing.assert_array_equal(by_code, by_label)
    assert by_code[0].tolist() == [float(ROW[f]) for f in heart_schema.feature_order]


def test_null_is_missing_for_nullable_features(codec, heart_schema):
    rows = codec.encode(per_feature({"chol": None, "ca": None}))
    order = heart_schema.feature_order
    assert math.isnan(rows[0, order.index("chol")]) and math.isnan(rows[0, order.index("ca")])


def test_matrix_input_accepts_nan_for_nullable_columns(codec):
    row = [float(v) for v in ROW.values()]
    row[4] = math.nan
    matrix = codec.encode([InferInput("features", [1, 13], "FP64", row)])
    assert math.isnan(matrix[0, 4]) and matrix[0, 0] == 63


@pytest.mark.parametrize(("inputs", "reason", "fragment"), [
    (per_feature(drop=("thal",)), Reason.MISSING_INPUT, "missing input 'thal'"),
    (per_feature() + [InferInput("bmi", [1], "FP64", [20])], Reason.UNKNOWN_INPUT, "unknown input 'bmi'"),
    (per_feature() + [InferInput("features", [1, 13], "FP64", [0] * 13)], Reason.EXTRA_INPUT, "extra input"),
    (per_feature() + [InferInput("age", [1], "FP64", [50])], Reason.DUPLICATE_INPUT, "'age' appears more than once"),
    (per_feature({"age": 500}), Reason.OUT_OF_RANGE, "input 'age' element 0: 500 is outside [1, 120] years"),
    (per_feature({"chol": 0}), Reason.OUT_OF_RANGE, "'chol'"),
    (per_feature({"cp": 9}), Reason.UNKNOWN_CATEGORY, "unknown code 9 for 'cp'"),
    (per_feature({"cp": "chest pain"}), Reason.UNKNOWN_CATEGORY, "unknown category 'chest pain'"),
    (per_feature({"age": None}), Reason.MISSING_VALUE, "'age' is not nullable"),
    (per_feature({"sex": None}), Reason.MISSING_VALUE, "'sex' is not nullable"),
    (per_feature({"oldpeak": float("nan")}), Reason.NON_FINITE, "input 'oldpeak' element 0: nan"),
    (per_feature({"thalach": float("inf")}), Reason.NON_FINITE, "input 'thalach' element 0: inf"),
    (per_feature({"age": "sixty"}), Reason.DATATYPE, "numeric feature needs a numeric datatype"),
    (per_feature({"age": "x"}, datatypes={"age": "FP64"}), Reason.DATATYPE, "'x' is not a number"),
    (per_feature(datatypes={"age": "BOOL"}), Reason.DATATYPE, "datatype BOOL is not allowed"),
    ([InferInput("features", [1, 12], "FP64", [0] * 12)], Reason.SHAPE, "must be [N, 13]"),
    ([InferInput("features", [1, 13], "INT32", [0] * 13)], Reason.DATATYPE, "FP32 or FP64"),
    ([InferInput("features", [1, 13], "FP64", [float(v) for v in ROW.values()][:-1] + [math.inf])],
     Reason.NON_FINITE, "('thal'): inf"),
    ([InferInput("features", [1, 13], "FP64", [float("nan")] + [float(v) for v in ROW.values()][1:])],
     Reason.MISSING_VALUE, "'age' is not nullable"),
])
def test_malformed_requests_name_the_input_and_the_problem(codec, inputs, reason, fragment):
    with pytest.raises(BadRequest) as err:
        codec.encode(inputs)
    assert err.value.kind is reason
    assert fragment in err.value.message


def test_rows_must_agree_and_respect_the_limit(heart_schema):
    codec = HeartDiseaseCodec(heart_schema, TransformerSettings(max_rows_per_request=2))
    inputs = per_feature()
    inputs[3] = InferInput("trestbps", [2], "FP64", [120, 130])
    with pytest.raises(BadRequest, match="differs from the 1 rows"):
        codec.encode(inputs)
    with pytest.raises(BadRequest, match="3 rows; 1 to 2 allowed"):
        codec.encode([InferInput("features", [3, 13], "FP64", [float(v) for v in ROW.values()] * 3)])


def test_decode_thresholds_and_risk_levels(heart_schema):
    codec = HeartDiseaseCodec(heart_schema, TransformerSettings(threshold=0.5, risk_medium=0.3, risk_high=0.6))
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.5, 0.5]])
    tensors, classes = codec.decode({"predict_proba": proba})
    np.testing.assert_allclose(tensors["probability"], [0.1, 0.4, 0.8, 0.5], rtol=1e-6)
    assert tensors["probability"].dtype == np.float32
    assert tensors["prediction"].tolist() == [0, 0, 1, 1]
    assert tensors["risk_level"].tolist() == ["Low", "Medium", "High", "Medium"]
    assert [codec.class_labels[i] for i in classes] == ["no disease", "no disease", "disease", "disease"]


def test_any_tabular_schema_is_read_from_its_feature_objects():
    schema = TabularSchema("heart-disease", (
        NumericFeature("dose", min=None, max=5.0, unit="mg", nullable=True),
        CategoricalFeature("arm", {0: "placebo", 1: "drug"}, {"p": 0})), classes=("ok", "alert"),
        positive_class="alert", threshold=0.7, risk_medium=0.2, risk_high=0.9, model_input="x")
    codec = HeartDiseaseCodec(schema, TransformerSettings())
    rows = codec.encode([InferInput("dose", [3], "FP64", [-1e6, None, 5.0]),
                         InferInput("arm", [3], "BYTES", ["P", "drug", "1"])])
    assert codec.model_input == "x" and codec.class_labels == ("ok", "alert")
    assert rows[:, 1].tolist() == [0.0, 1.0, 1.0] and rows[0, 0] == -1e6 and math.isnan(rows[1, 0])
    assert [t["datatype"] for t in codec.input_types()] == ["FP64", "BYTES", "FP64"]
    with pytest.raises(BadRequest, match=r"5.5 is outside \[-inf, 5\] mg"):
        codec.encode([InferInput("dose", [1], "FP64", [5.5]), InferInput("arm", [1], "FP64", [0])])
    with pytest.raises(BadRequest, match=r"unknown code 2 for 'arm'; allowed: 0 \(placebo\), 1 \(drug\)"):
        codec.encode([InferInput("dose", [1], "FP64", [1]), InferInput("arm", [1], "FP64", [2])])
    tensors, _ = codec.decode({"predict_proba": np.array([[0.35, 0.65], [0.05, 0.95]])})
    assert tensors["prediction"].tolist() == [0, 1] and tensors["risk_level"].tolist() == ["Medium", "High"]
