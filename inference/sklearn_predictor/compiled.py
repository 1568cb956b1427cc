"""The fitted pipeline's ``predict_proba`` as a few numpy operations, for the request path.

scikit-learn validates its input again in every step of every call (``check_array``, narwhals'
dataframe probes, ``check_is_fitted``, the one-hot encoder's per-column unknown-category checks): on the
pipeline training registers (imputation with missingness indicators, scaling and one-hot in a
``ColumnTransformer``, logistic regression) that is about 3 ms of Python per call, for 1 row or 64,
while the arithmetic is some microseconds. The predictor has already checked the tensor it was sent
(shape, FP64), so the plan below runs only the arithmetic, read off the fitted objects:

- ``Pipeline``: its steps in order (``None`` / ``"passthrough"`` steps skipped);
- ``ColumnTransformer``: each fitted transformer on its columns, outputs side by side, ``drop`` /
  ``passthrough`` remainders;
- ``SimpleImputer`` (missing = NaN, every statistic defined): NaN → the statistic, missingness
  indicators appended for the columns it kept them for;
- ``StandardScaler``: centring and scaling as fitted;
- ``OneHotEncoder`` (no ``drop``, no infrequent categories, unknown categories ignored): one column per
  category;
- a binary ``LogisticRegression`` as the last step: the logistic of its decision function;
  ``GradientBoostingClassifier`` (binary, constant start) and ``RandomForestClassifier``: every tree walked
  at once (:class:`_Forest`), leaf values added in scikit-learn's order. Any other last step gets the
  transformed rows through its own ``predict_proba`` (that step's checks only).

A pipeline with any other step has no plan (:class:`Unsupported`, the reason logged), and the predictor
calls scikit-learn as before. A plan is used only after it has given scikit-learn's own probabilities
(:data:`ATOL`) on the bundle's reference rows, one at a time and all together, and on the same rows with
missing values and unseen categories (:func:`verify`). Rows holding an infinity go to scikit-learn, so
they are refused exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ATOL = 1e-9  # the plan against scikit-learn's predict_proba; float64 sums in another order differ by ~1e-16

Step = Callable[[np.ndarray], np.ndarray]


class Unsupported(ValueError):
    """The fitted object holds a step the plan does not cover; the message names it."""


def _is_passthrough(step) -> bool:
    return step is None or (isinstance(step, str) and step == "passthrough")


def _pipeline(steps) -> Step:
    plans = [_transform(step) for _, step in steps if not _is_passthrough(step)]

    def run(x: np.ndarray) -> np.ndarray:
        for plan in plans:
            x = plan(x)
        return x

    return run


def _columns(columns, n_features: int) -> np.ndarray:
    try:
        index = np.arange(n_features)[columns]
    except (IndexError, TypeError):  # column names: a DataFrame's, never this predictor's tensor
        index = np.array([], dtype=object)
    if index.dtype.kind not in "iu":
        raise Unsupported(f"ColumnTransformer columns {columns!r}: only positions are planned")
    return index


def _column_transformer(ct) -> Step:
    parts = []
    for _, step, columns in ct.transformers_:
        if isinstance(step, str) and step == "drop":
            continue
        index = _columns(columns, ct.n_features_in_)
        if index.size == 0:
            continue
        parts.append((index, (lambda x: x) if _is_passthrough(step) else _transform(step)))

    def run(x: np.ndarray) -> np.ndarray:
        return np.hstack([plan(x[:, index]) for index, plan in parts])

    return run


def _imputer(imputer) -> Step:
    if not (isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values)):
        raise Unsupported(f"SimpleImputer with missing_values={imputer.missing_values!r} (only NaN is planned)")
    fill = np.asarray(imputer.statistics_, dtype=np.float64)
    if np.isnan(fill).any():  # columns with no statistic are dropped or kept empty: not planned
        raise Unsupported("SimpleImputer with a column that had no values when fitted")
    indicator = getattr(imputer, "indicator_", None)
    flagged = None if indicator is None else np.asarray(indicator.features_)
    if indicator is not None and indicator.features != "missing-only":
        raise Unsupported(f"MissingIndicator with features={indicator.features!r}")

    def run(x: np.ndarray) -> np.ndarray:
        missing = np.isnan(x)
        filled = np.where(missing, fill, x)
        return filled if flagged is None else np.hstack([filled, missing[:, flagged].astype(np.float64)])

    return run


def _scaler(scaler) -> Step:
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None

    def run(x: np.ndarray) -> np.ndarray:
        if mean is not None:
            x = x - mean
        return x / scale if scale is not None else x

    return run


def _one_hot(encoder) -> Step:
    if encoder.drop_idx_ is not None:
        raise Unsupported(f"OneHotEncoder with drop={encoder.drop!r}")
    if getattr(encoder, "_infrequent_enabled", False):
        raise Unsupported("OneHotEncoder with infrequent categories")
    if encoder.handle_unknown not in ("ignore", "infrequent_if_exist"):
        raise Unsupported(f"OneHotEncoder with handle_unknown={encoder.handle_unknown!r} (it must refuse unknowns)")
    categories = [np.asarray(c) for c in encoder.categories_]
    if any(c.dtype.kind not in "iuf" or np.isnan(c.astype(np.float64)).any() for c in categories):
        raise Unsupported("OneHotEncoder with non-numeric or missing categories")
    categories = [c.astype(np.float64) for c in categories]

    def run(x: np.ndarray) -> np.ndarray:
        return np.hstack([(x[:, j:j + 1] == c).astype(np.float64) for j, c in enumerate(categories)])

    return run


def _transform(step) -> Step:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    kinds = ((Pipeline, lambda s: _pipeline(s.steps)), (ColumnTransformer, _column_transformer),
             (SimpleImputer, _imputer), (StandardScaler, _scaler), (OneHotEncoder, _one_hot))
    for kind, plan in kinds:
        if type(step) is kind:  # a subclass may transform otherwise
            return plan(step)
    raise Unsupported(f"no plan for a {type(step).__name__} step")


class _Forest:
    """Every tree of an ensemble walked at once: ``leaves(x)`` is the leaf each row reaches in each tree,
    ``[N, T]`` indices into the trees' nodes laid end to end. A leaf points to itself, so ``depth`` steps of
    one vectorised comparison take every row to its leaf. Rows are compared as float32, as scikit-learn's
    trees compare them."""

    def __init__(self, trees):
        sizes = [t.node_count for t in trees]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        self.roots = starts
        left, right, feature, threshold = [], [], [], []
        for tree, start in zip(trees, starts, strict=True):
            own = np.arange(tree.node_count) + start
            leaf = tree.children_left < 0
            left.append(np.where(leaf, own, tree.children_left + start))
            right.append(np.where(leaf, own, tree.children_right + start))
            feature.append(np.where(leaf, 0, tree.feature))
            threshold.append(np.where(leaf, 0.0, tree.threshold))
        self.left, self.right = np.concatenate(left), np.concatenate(right)
        self.feature, self.threshold = np.concatenate(feature), np.concatenate(threshold)
        self.depth = max(t.max_depth for t in trees)

    def leaves(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32).astype(np.float64)
        rows = np.arange(len(x))[:, None]
        node = np.broadcast_to(self.roots, (len(x), len(self.roots)))
        for _ in range(self.depth):
            node = np.where(x[rows, self.feature[node]] <= self.threshold[node], self.left[node], self.right[node])
        return node


def _two_classes(p: np.ndarray) -> np.ndarray:
    """``[1 - p, p]`` per row, as scikit-learn's binary classifiers answer from P(class 1)."""
    return np.stack([1.0 - p, p], axis=1)


def _running_sum(first: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """``first + terms[:, 0] + terms[:, 1] + …`` added one at a time in order, as scikit-learn's loops add."""
    return np.cumsum(np.concatenate([first[:, None], terms], axis=1), axis=1)[:, -1]


def _gradient_boosting(gb) -> Callable[[np.ndarray], np.ndarray]:
    from scipy.special import expit
    from sklearn.dummy import DummyClassifier

    if gb.n_trees_per_iteration_ != 1 or len(gb.classes_) != 2:
        raise Unsupported("GradientBoostingClassifier with more than two classes")
    if not (gb.init_ == "zero" or type(gb.init_) is DummyClassifier):  # a constant start, the same for every row
        raise Unsupported(f"GradientBoostingClassifier with init={type(gb.init_).__name__}")
    start = float(gb._raw_predict_init(np.zeros((1, gb.n_features_in_)))[0, 0])
    forest = _Forest([stage[0].tree_ for stage in gb.estimators_])
    values = np.concatenate([stage[0].tree_.value[:, 0, 0] for stage in gb.estimators_])
    rate = float(gb.learning_rate)

    def proba(x: np.ndarray) -> np.ndarray:
        return _two_classes(expit(_running_sum(np.full(len(x), start), rate * values[forest.leaves(x)])))

    return proba


def _random_forest(rf) -> Callable[[np.ndarray], np.ndarray]:
    if rf.n_outputs_ != 1:
        raise Unsupported("RandomForestClassifier with several outputs")
    n_classes = int(rf.n_classes_)
    forest = _Forest([tree.tree_ for tree in rf.estimators_])
    values = np.concatenate([tree.tree_.value[:, 0, :n_classes] for tree in rf.estimators_])

    def proba(x: np.ndarray) -> np.ndarray:
        leaves = values[forest.leaves(x)]  # [N, T, classes]
        summed = np.stack([_running_sum(np.zeros(len(x)), leaves[:, :, k]) for k in range(n_classes)], axis=1)
        return summed / len(rf.estimators_)

    return proba


def _final(estimator) -> Callable[[np.ndarray], np.ndarray]:
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    if type(estimator) is LogisticRegression and estimator.coef_.shape[0] == 1 and len(estimator.classes_) == 2:
        from scipy.special import expit

        coef, intercept = estimator.coef_[0].astype(np.float64), float(estimator.intercept_[0])

        def logistic(x: np.ndarray) -> np.ndarray:
            return _two_classes(expit(x @ coef + intercept))

        return logistic
    try:
        if type(estimator) is GradientBoostingClassifier:
            return _gradient_boosting(estimator)
        if type(estimator) is RandomForestClassifier:
            return _random_forest(estimator)
    except Unsupported:
        pass  # its own predict_proba, on the rows the plan transformed
    if not hasattr(estimator, "predict_proba"):
        raise Unsupported(f"the last step, a {type(estimator).__name__}, has no predict_proba")
    return estimator.predict_proba


def plan(model) -> Callable[[np.ndarray], np.ndarray]:
    """``rows [N, n_features] float64 -> predict_proba [N, n_classes]`` for a fitted ``Pipeline``."""
    from sklearn.pipeline import Pipeline

    if type(model) is not Pipeline:
        raise Unsupported(f"the model is a {type(model).__name__}, not a Pipeline")
    *transforms, (_, last) = model.steps
    before, after = _pipeline(transforms), _final(last)

    def predict_proba(rows: np.ndarray) -> np.ndarray:
        return after(before(rows))

    return predict_proba


def probes(reference: np.ndarray, seed: int = 0) -> np.ndarray:
    """Rows to hold a plan to: the reference rows, each column also missing, and values no category had."""
    rng = np.random.default_rng(seed)
    holes = reference.copy()
    holes[rng.random(holes.shape) < 0.3] = np.nan
    odd = reference.copy()
    odd[rng.random(odd.shape) < 0.3] = 987.5  # in no category, far out of every numeric range
    return np.vstack([reference, holes, odd, np.full((1, reference.shape[1]), np.nan)])


def verify(model, fast: Callable[[np.ndarray], np.ndarray], reference: np.ndarray) -> str:
    """Why ``fast`` may not stand in for ``model.predict_proba``; empty when it gives the same answers."""
    rows = probes(np.asarray(reference, dtype=np.float64))
    try:
        expected = np.asarray(model.predict_proba(rows), dtype=np.float64)
    except ValueError as err:  # e.g. no imputer: scikit-learn refuses missing values the plan would pass on
        return f"scikit-learn refuses rows the plan would answer ({str(err).splitlines()[0][:120]})"
    together = fast(rows)
    if together.shape != expected.shape:
        return f"the plan answers shape {together.shape}, scikit-learn {expected.shape}"
    one_by_one = np.vstack([fast(rows[i:i + 1]) for i in range(len(rows))])
    worst = max(float(np.abs(together - expected).max()), float(np.abs(one_by_one - expected).max()))
    if not worst <= ATOL:
        return f"the plan differs from scikit-learn by {worst:.3g} on the reference rows (allowed {ATOL:g})"
    return ""


def compile_checked(model, reference: np.ndarray) -> tuple[Callable[[np.ndarray], np.ndarray] | None, str]:
    """``(predict_proba, "")`` with the plan that gives scikit-learn's answers, or ``(None, why not)``."""
    try:
        fast = plan(model)
    except (Unsupported, AttributeError) as err:
        return None, str(err)
    try:
        reason = verify(model, fast, reference)
    except (ValueError, IndexError, TypeError) as err:  # the plan itself could not run them: serve without it
        reason = f"the plan fails on the reference rows: {type(err).__name__}: {str(err)[:120]}"
    if reason:
        return None, reason

    def predict_proba(rows: np.ndarray) -> np.ndarray:
        if np.isinf(rows).any():  # scikit-learn refuses these, with its own message
            return model.predict_proba(rows)
        return fast(rows)

    return predict_proba, ""
