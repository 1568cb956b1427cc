"""Keeping a wide embedding tractable for a per-column report.

EfficientNet-B0's embedding has 1280 dimensions: a per-column drift table that wide is unreadable and
slow, and most dimensions carry little of the variance. When the embedding is wider than ``max_dims``,
both tables are projected on the first ``max_dims`` principal components of the *reference* (fitted on
the reference alone, so a shifted period cannot steer the projection); the report names the choice and
how much reference variance the components keep. Narrower embeddings are compared as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

DEFAULT_MAX_DIMS = 20


@dataclass(frozen=True)
class Reduced:
    reference: pd.DataFrame
    current: pd.DataFrame
    note: str  # one sentence for the report


def reduce_embedding(reference: pd.DataFrame, current: pd.DataFrame, max_dims: int = DEFAULT_MAX_DIMS) -> Reduced:
    dim = reference.shape[1]
    if max_dims <= 0 or dim <= max_dims:
        return Reduced(reference, current, f"Embedding: all {dim} dimensions compared as they are.")
    from sklearn.decomposition import PCA

    k = min(max_dims, len(reference))
    pca = PCA(n_components=k, random_state=0).fit(reference.to_numpy())
    names = [f"pc{i + 1}" for i in range(k)]
    kept = float(pca.explained_variance_ratio_.sum())

    def project(frame: pd.DataFrame) -> pd.DataFrame:
        if frame.empty:
            return pd.DataFrame(columns=names, dtype=float)
        return pd.DataFrame(pca.transform(frame.to_numpy()), columns=names)

    return Reduced(project(reference), project(current),
                   f"Embedding: {dim} dimensions projected on the first {k} principal components of the "
                   f"reference ({kept:.0%} of its variance); columns pc1…pc{k}.")
