"""``drift/settings.json``: one typed shape per detector kind, read by the drift sidecar.

The detectors themselves are built by the sidecar from these settings and ``drift/reference.npz``
(arrays named here); no detector object is ever pickled into a bundle.

- :class:`TabularDriftSettings` (heart-disease): alibi-detect ``TabularDrift``: KS on numeric
  features, chi-square on categorical ones, missingness kept as information, a multiple-testing
  correction over the features; optionally (:class:`ScoreDrift`) a second test on the model's answer,
  P(positive class) read from response events, against out-of-fold scores of the training rows.
  A window drifts when either test flags it; the two levels add up to the window's false-positive
  budget.
- :class:`KSDriftSettings` (pneumonia): feature-wise ``KSDrift`` on an output of the model (the
  embedding or the softmax) read from response events: black-box shift detection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bundle import _fields as f
from bundle.layout import DRIFT_SETTINGS

TABULAR_DRIFT = "TabularDrift"
KS_DRIFT = "KSDrift"
CORRECTIONS = ("bonferroni", "fdr")
SOURCES = ("request", "response")  # which logged event carries what the detector reads


@dataclass(frozen=True)
class Window:
    """A verdict after ``size`` events or ``seconds`` (whichever comes first); ``slide`` 0 = tumbling."""

    size: int = 100
    seconds: float | None = None
    slide: int = 0

    def to_dict(self) -> dict:
        return {"size": self.size, "seconds": self.seconds, "slide": self.slide}

    @classmethod
    def from_dict(cls, data: dict) -> Window:
        window = cls(f.integer(data, "size", "window.", low=1), f.number(data, "seconds", "window.", None, low=0),
                     f.integer(data, "slide", "window.", 0))
        if window.slide >= window.size:
            raise f.FieldError(f"window.slide: {window.slide} must be below size {window.size}")
        return window


CVM_DRIFT = "CVMDrift"
SCORE_TESTS = (CVM_DRIFT, KS_DRIFT)


@dataclass(frozen=True)
class ScoreDrift:
    """A univariate test on one column of a response output (the model's P(positive)): black-box shift
    detection, which sees prevalence shift that the input features show only weakly."""

    output: str  # response output, e.g. ``predict_proba``
    column: int  # its column: the positive class
    reference_array: str = "score"  # [n, 1] in drift/reference.npz: scores of rows the model did not train on
    p_val: float = 0.03
    test: str = CVM_DRIFT

    def to_dict(self) -> dict:
        return {"output": self.output, "column": self.column, "reference_array": self.reference_array,
                "p_val": self.p_val, "test": self.test}

    @classmethod
    def from_dict(cls, data: dict) -> ScoreDrift:
        return cls(f.text(data, "output", "score."), f.integer(data, "column", "score.", low=0),
                   f.text(data, "reference_array", "score."), f.number(data, "p_val", "score.", low=0, high=1),
                   f.text(data, "test", "score.", choices=SCORE_TESTS))


@dataclass(frozen=True)
class TabularDriftSettings:
    feature_names: tuple[str, ...]
    categorical: tuple[str, ...]  # names among feature_names tested with chi-square
    p_val: float = 0.05
    correction: str = "bonferroni"
    reference_array: str = "x"  # array in drift/reference.npz: [n, len(feature_names)], NaN = missing
    missing: str = "NaN"
    window: Window = field(default_factory=Window)
    source: str = "request"
    score: ScoreDrift | None = None
    detector: str = field(default=TABULAR_DRIFT, init=False)

    def to_dict(self) -> dict:
        return {"detector": TABULAR_DRIFT, "feature_names": list(self.feature_names),
                "categorical": list(self.categorical), "p_val": self.p_val, "correction": self.correction,
                "reference_array": self.reference_array, "missing": self.missing, "window": self.window.to_dict(),
                "source": self.source, "score": self.score.to_dict() if self.score else None}

    @classmethod
    def from_dict(cls, data: dict) -> TabularDriftSettings:
        names = f.strings(data, "feature_names")
        categorical = f.strings(data, "categorical", min_len=0)
        unknown = [c for c in categorical if c not in names]
        if unknown:
            raise f.FieldError(f"categorical: {unknown[0]!r} is not among feature_names")
        return cls(names, categorical, f.number(data, "p_val", low=0, high=1),
                   f.text(data, "correction", choices=CORRECTIONS), f.text(data, "reference_array"),
                   f.text(data, "missing", choices=("NaN",)), Window.from_dict(f.obj(data, "window")),
                   f.text(data, "source", choices=SOURCES),
                   ScoreDrift.from_dict(f.obj(data, "score")) if data.get("score") is not None else None)


@dataclass(frozen=True)
class KSDriftSettings:
    reference_array: str  # "embedding" or "softmax" in drift/reference.npz: [n, dim]
    dim: int
    p_val: float = 0.05
    correction: str = "bonferroni"
    window: Window = field(default_factory=Window)
    source: str = "response"
    output: str = "embedding"  # the predictor's response output the detector reads
    detector: str = field(default=KS_DRIFT, init=False)

    def to_dict(self) -> dict:
        return {"detector": KS_DRIFT, "reference_array": self.reference_array, "dim": self.dim,
                "p_val": self.p_val, "correction": self.correction, "window": self.window.to_dict(),
                "source": self.source, "output": self.output}

    @classmethod
    def from_dict(cls, data: dict) -> KSDriftSettings:
        return cls(f.text(data, "reference_array"), f.integer(data, "dim", low=1), f.number(data, "p_val", low=0, high=1),
                   f.text(data, "correction", choices=CORRECTIONS), Window.from_dict(f.obj(data, "window")),
                   f.text(data, "source", choices=SOURCES), f.text(data, "output"))


DriftSettings = TabularDriftSettings | KSDriftSettings
DETECTORS = {TABULAR_DRIFT: TabularDriftSettings, KS_DRIFT: KSDriftSettings}


def parse(data: dict) -> DriftSettings:
    return f.tagged(data, "detector", DETECTORS)


def read(folder: Path) -> DriftSettings:
    return f.read_typed(folder, DRIFT_SETTINGS, parse)
