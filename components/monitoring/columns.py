"""Which columns a monitoring report compares, read from the bundle's drift settings: the model-input
features the sidecar logs from requests (heart-disease) plus the model's score from responses when the
bundle has a score reference, or the image embedding the sidecar logs from responses (pneumonia).

The spec travels between pipeline steps as JSON, so it is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bundle.drift import DriftSettings, KSDriftSettings, TabularDriftSettings

TABULAR = "tabular"
EMBEDDING = "embedding"
SCORE = "score"  # the column holding P(positive) from response rows
MISSING_CATEGORY = -1.0  # a missing categorical code is a category of its own, as the sidecar tests it


@dataclass(frozen=True)
class Columns:
    kind: str  # TABULAR | EMBEDDING
    features: tuple[str, ...] = ()  # tabular: request columns, in the logged order
    categorical: tuple[str, ...] = ()
    score: bool = False  # tabular: a score column from response rows
    dim: int = 0  # embedding: logged width

    @property
    def names(self) -> list[str]:
        """Column names of the frames built from the log and the reference."""
        if self.kind == EMBEDDING:
            return embedding_names(self.dim)
        return [*self.features, *([SCORE] if self.score else [])]

    @property
    def numerical(self) -> list[str]:
        return [n for n in self.names if n not in self.categorical]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "features": list(self.features), "categorical": list(self.categorical),
                "score": self.score, "dim": self.dim}

    @classmethod
    def from_dict(cls, data: dict) -> Columns:
        return cls(data["kind"], tuple(data["features"]), tuple(data["categorical"]), bool(data["score"]),
                   int(data["dim"]))


def embedding_names(dim: int) -> list[str]:
    return [f"e{i}" for i in range(dim)]


def columns_of(settings: DriftSettings, reference: dict[str, np.ndarray]) -> Columns:
    """The spec for a bundle; the score column only when the bundle both asks for a score test and ships
    its reference scores (older bundles have neither)."""
    if isinstance(settings, TabularDriftSettings):
        has_score = settings.score is not None and settings.score.reference_array in reference
        return Columns(TABULAR, tuple(settings.feature_names), tuple(settings.categorical), score=has_score)
    if isinstance(settings, KSDriftSettings):
        return Columns(EMBEDDING, dim=settings.dim)
    raise TypeError(f"no monitoring report for drift settings of type {type(settings).__name__}")
