"""The sklearn Pipeline that is trained, registered and served: preprocessing and estimator in one
object, so serving applies exactly what training fitted.

Input: float64 array [N, 13] in ``schema.FEATURES`` order, UCI codes, NaN for missing.
"""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from components.heart_disease.schema import CATEGORICAL, FEATURES, NUMERIC

FAMILIES = ("logistic_regression", "random_forest", "gradient_boosting")


def preprocessor() -> ColumnTransformer:
    numeric = [FEATURES.index(f) for f in NUMERIC]
    categorical = [FEATURES.index(f) for f in CATEGORICAL]
    return ColumnTransformer([
        # Missingness is informative here (sites recorded different tests): keep indicators.
        ("numeric", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), numeric),
        ("categorical", make_pipeline(SimpleImputer(strategy="constant", fill_value=-1),
                                      OneHotEncoder(handle_unknown="ignore")), categorical),
    ])


def estimator(family: str, params: dict, seed: int = 0):
    if family == "logistic_regression":
        return LogisticRegression(C=params["C"], l1_ratio=params.get("l1_ratio", 0.0),
                                  solver="saga", max_iter=5000, random_state=seed)
    if family == "random_forest":
        return RandomForestClassifier(n_estimators=params["n_estimators"], max_depth=params.get("max_depth"),
                                      min_samples_leaf=params["min_samples_leaf"],
                                      max_features=params["max_features"], random_state=seed, n_jobs=1)
    if family == "gradient_boosting":
        return GradientBoostingClassifier(n_estimators=params["n_estimators"], learning_rate=params["learning_rate"],
                                          max_depth=params["max_depth"], subsample=params["subsample"],
                                          random_state=seed)
    raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")


def build(family: str, params: dict, seed: int = 0) -> Pipeline:
    return Pipeline([("preprocess", preprocessor()), ("model", estimator(family, params, seed))])
