"""Per-feature attributions of a served scikit-learn Pipeline, computed with SHAP.

The pipeline is ``preprocess steps → estimator``. The estimator is explained on what the preprocessing
hands it (scaled values, missing-value indicators, one-hot columns), exactly:

- linear models (``coef_``): :class:`shap.LinearExplainer` with an independent masker over the bundle's
  reference rows, in log-odds; a column's value is ``coef × (z − mean z)``;
- tree ensembles: :class:`shap.TreeExplainer`, tree-path-dependent (TreeSHAP on the trees' own cover),
  in the estimator's raw output: log-odds for gradient boosting, probability for a random forest.

Each transformed column is then credited to the one input feature it was made from (its value, its
missingness indicator, its one-hot categories), read from ``get_feature_names_out``. SHAP values add
up, so per row ``sum(attributions) + base_value`` is the model's output in that space (the additivity
SHAP guarantees; checked here at load on the reference rows) and a feature the model does not use gets
exactly zero.
"""

from __future__ import annotations

import re

import numpy as np

LOG_ODDS = "log-odds"
PROBABILITY = "probability"
_COLUMN = re.compile(r"^(?:missingindicator_)?x(\d+)(?:_.*)?$")
ADDITIVITY_ATOL = 1e-6  # |sum(attributions) + base - output|, checked at load


class NotExplainable(ValueError):
    """The estimator or its preprocessing is of a kind this explainer cannot attribute exactly."""


def column_groups(preprocess, n_features: int) -> np.ndarray:
    """``[n_columns]``: the input feature each transformed column comes from."""
    try:
        names = [str(name) for name in preprocess.get_feature_names_out()]
    except (AttributeError, ValueError) as err:
        raise NotExplainable(f"the preprocessing cannot name its output columns: {err}") from None
    groups = []
    for name in names:
        match = _COLUMN.match(name.rsplit("__", 1)[-1])
        if match is None or int(match.group(1)) >= n_features:
            raise NotExplainable(f"output column {name!r} cannot be traced back to one input feature")
        groups.append(int(match.group(1)))
    return np.asarray(groups, dtype=np.intp)


def _dense(z) -> np.ndarray:
    return np.asarray(z.toarray() if hasattr(z, "toarray") else z, dtype=np.float64)


class Explainer:
    """``explain(rows)`` → ``(attributions [N, n_features], base_value [N])`` in :attr:`space`."""

    def __init__(self, pipeline, background: np.ndarray, max_background: int = 200, seed: int = 0):
        import shap

        steps = getattr(pipeline, "steps", None)
        if not steps:
            raise NotExplainable("the served model is not a scikit-learn Pipeline")
        self.estimator = steps[-1][1]
        self.preprocess = pipeline[:-1] if len(steps) > 1 else None
        self.n_features = int(pipeline.n_features_in_)
        background = np.asarray(background, dtype=np.float64)
        if len(background) > max_background:
            keep = np.random.default_rng(seed).choice(len(background), max_background, replace=False)
            background = background[np.sort(keep)]
        z_background = self._transform(background)
        self.groups = (column_groups(self.preprocess, self.n_features) if self.preprocess is not None
                       else np.arange(self.n_features))
        if len(self.groups) != z_background.shape[1]:
            raise NotExplainable(f"{z_background.shape[1]} model columns, {len(self.groups)} named")
        if hasattr(self.estimator, "coef_"):
            if len(np.atleast_2d(self.estimator.coef_)) != 1:
                raise NotExplainable("only a binary linear model is explained")
            self._shap = shap.LinearExplainer(self.estimator, shap.maskers.Independent(z_background, len(z_background)))
            self.space = LOG_ODDS
        elif hasattr(self.estimator, "estimators_"):
            try:
                self._shap = shap.TreeExplainer(self.estimator, feature_perturbation="tree_path_dependent")
            except Exception as err:  # noqa: BLE001 - shap names the model kinds it supports
                raise NotExplainable(f"{type(self.estimator).__name__}: {err}") from None
            self.space = LOG_ODDS if hasattr(self.estimator, "loss") else PROBABILITY
        else:
            raise NotExplainable(f"{type(self.estimator).__name__} is neither linear nor a tree ensemble")
        self._check_additivity(background[: min(len(background), 50)])

    def _transform(self, rows: np.ndarray) -> np.ndarray:
        return _dense(self.preprocess.transform(rows) if self.preprocess is not None else rows)

    def model_output(self, rows: np.ndarray) -> np.ndarray:
        """The estimator's output in :attr:`space` for the positive class."""
        z = self._transform(rows)
        if self.space == LOG_ODDS and hasattr(self.estimator, "decision_function"):
            return np.asarray(self.estimator.decision_function(z), dtype=np.float64).reshape(-1)
        return np.asarray(self.estimator.predict_proba(z), dtype=np.float64)[:, 1]

    def explain(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = self._transform(rows)
        values = np.asarray(self._shap.shap_values(z), dtype=np.float64)
        expected = np.asarray(self._shap.expected_value, dtype=np.float64).reshape(-1)
        if values.ndim == 3:  # (rows, columns, classes) of a classifier explained per class: the positive one
            values, expected = values[:, :, 1], expected[1:]
        attributions = np.zeros((len(z), self.n_features))
        np.add.at(attributions.T, self.groups, values.T)  # each column credited to its input feature
        return attributions, np.full(len(z), float(expected[0]))

    def _check_additivity(self, rows: np.ndarray) -> None:
        attributions, base = self.explain(rows)
        gap = np.abs(attributions.sum(axis=1) + base - self.model_output(rows)).max()
        if not gap <= ADDITIVITY_ATOL:
            raise NotExplainable(f"attributions do not add up to the model's output (largest gap {gap:.2e})")
