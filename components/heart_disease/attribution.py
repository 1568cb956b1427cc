"""SHAP values of the trained Pipeline per input feature, for the evaluate step's summary plot.

The estimator is explained on its own columns (SHAP's LinearExplainer over a background sample for
linear models, TreeExplainer for the tree ensembles); each column is then credited to the feature it
was made from, read from the fitted :func:`components.heart_disease.model.preprocessor`: a numeric
feature's scaled value and its missingness indicator, a categorical feature's one-hot columns.
"""

from __future__ import annotations

import numpy as np

from components.heart_disease.schema import CATEGORICAL, FEATURES, NUMERIC


def column_features(preprocess) -> np.ndarray:
    """``[n_columns]``: the index in ``FEATURES`` of the feature each output column comes from."""
    transformer = preprocess[-1] if hasattr(preprocess, "steps") else preprocess
    owners: list[int] = []
    for name, fitted, _ in transformer.transformers_:
        if name == "numeric":
            imputer = fitted[0]
            owners += [FEATURES.index(f) for f in NUMERIC]
            owners += [FEATURES.index(NUMERIC[i]) for i in getattr(imputer.indicator_, "features_", [])]
        elif name == "categorical":
            for feature, categories in zip(CATEGORICAL, fitted[-1].categories_, strict=True):
                owners += [FEATURES.index(feature)] * len(categories)
    return np.asarray(owners, dtype=np.intp)


def shap_values(pipeline, background: np.ndarray, rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """``[len(rows), len(FEATURES)]`` SHAP values (log-odds for linear models and boosting, probability
    for a forest)."""
    import shap

    preprocess, estimator = pipeline[:-1], pipeline[-1]

    def dense(z):
        return np.asarray(z.toarray() if hasattr(z, "toarray") else z, dtype=np.float64)

    z_rows = dense(preprocess.transform(rows))
    if hasattr(estimator, "coef_"):
        sample = background[np.random.default_rng(seed).permutation(len(background))[:200]]
        z_background = dense(preprocess.transform(sample))
        explainer = shap.LinearExplainer(estimator, shap.maskers.Independent(z_background, len(z_background)))
    else:
        explainer = shap.TreeExplainer(estimator, feature_perturbation="tree_path_dependent")
    values = np.asarray(explainer.shap_values(z_rows), dtype=np.float64)
    if values.ndim == 3:  # per class: the positive one
        values = values[:, :, 1]
    owners = column_features(preprocess)
    per_feature = np.zeros((len(rows), len(FEATURES)))
    np.add.at(per_feature.T, owners, values.T)
    return per_feature


def summary_png(values: np.ndarray, rows: np.ndarray, titles: dict[str, str]) -> bytes:
    """SHAP's beeswarm summary of the test split: one row per feature, coloured by the patient's value."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    shap.summary_plot(values, features=rows, feature_names=[titles.get(f, f) for f in FEATURES], show=False,
                      plot_size=(8, 5.5))
    figure = plt.gcf()
    figure.suptitle("What drives the predictions on the test split (SHAP values)", fontsize=11)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()
