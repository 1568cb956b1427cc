"""Detectors built at start-up from a bundle's drift settings and reference arrays (never an unpickled
detector object), and the verdict each gives on a window.

- heart-disease, :class:`TabularDetector`: alibi-detect ``TabularDrift`` on the 13 request features
  (KS on numeric ones, chi-square on categorical ones, the configured correction), with missingness as
  information: a missing categorical value is a category of its own, a missing number an atom below
  every real value (KS is rank-based, so the share of missing values moves the statistic). Beside it,
  when the settings ask for it, ``CVMDrift`` (or ``KSDrift``) on the model's P(positive) read from the
  response: a window drifts when either test flags it.
- pneumonia, :class:`EmbeddingDetector`: feature-wise ``KSDrift`` on the embedding the predictor
  returns (black-box shift detection), with the configured correction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from bundle import Bundle
from bundle.drift import CVM_DRIFT, KSDriftSettings, TabularDriftSettings
from bundle.observations import REQUEST, RESPONSE
from inference.drift import events
from inference.drift.window import ClosedWindow

MISSING_CATEGORY = -1.0
MISSING_NUMBER = -1e12  # below every real value of a clinical measurement
MIN_TEST_ROWS = 2
REPORTED_DIMS = 20


def encode_missing(x: np.ndarray, categorical: list[int]) -> np.ndarray:
    out = np.array(x, dtype=np.float64, copy=True)
    missing = np.isnan(out)
    for j in range(out.shape[1]):
        out[missing[:, j], j] = MISSING_CATEGORY if j in categorical else MISSING_NUMBER
    return out


def strictest(threshold) -> float:
    """alibi-detect's threshold: one number (Bonferroni: p_val / k), or BH's step-up levels (FDR), whose
    smallest is what a single feature must beat alone."""
    return float(np.min(np.atleast_1d(threshold)))


@dataclass
class Test:
    """One statistical test's result, named for the verdict and the metrics."""

    name: str
    test: str
    p_val: float
    distance: float

    def to_dict(self) -> dict:
        return {"name": self.name, "test": self.test, "p_val": self.p_val, "distance": self.distance}


class TabularDetector:
    kind = "TabularDrift"

    def __init__(self, settings: TabularDriftSettings, reference: dict[str, np.ndarray], input_name: str | None):
        from alibi_detect.cd import CVMDrift, KSDrift, TabularDrift

        self.settings = settings
        self.input_name = input_name
        self.names = list(settings.feature_names)
        self.categorical = [self.names.index(c) for c in settings.categorical]
        x_ref = np.asarray(reference[settings.reference_array], dtype=np.float64)
        if x_ref.ndim != 2 or x_ref.shape[1] != len(self.names):
            raise ValueError(f"reference '{settings.reference_array}' is {x_ref.shape}; "
                             f"[n, {len(self.names)}] is needed")
        self.features = TabularDrift(encode_missing(x_ref, self.categorical), p_val=settings.p_val,
                                     categories_per_feature={j: None for j in self.categorical},
                                     correction=settings.correction)
        self.score = None
        if settings.score is not None:
            s = settings.score
            ref_scores = np.asarray(reference[s.reference_array], dtype=np.float64).reshape(-1, 1)
            test = CVMDrift if s.test == CVM_DRIFT else KSDrift
            self.score = test(ref_scores, p_val=s.p_val)
        self.needs = frozenset({REQUEST, RESPONSE} if self.score is not None else {REQUEST})
        self.widths = {"inputs": len(self.names), "outputs": 1}

    def extract(self, event: events.InferenceEvent) -> np.ndarray | None:
        """The numbers this detector keeps of an event: the feature rows of a request, P(positive) of a
        response."""
        if event.kind == REQUEST:
            rows = events.tensor(event.body, REQUEST, self.input_name)
            if rows.shape[1] != len(self.names):
                raise events.BadEvent("shape", f"the request has {rows.shape[1]} features per row; the "
                                               f"model takes {len(self.names)}")
            return rows
        if self.score is None:
            return None
        s = self.settings.score
        rows = events.tensor(event.body, RESPONSE, s.output if "outputs" in event.body else None)
        if rows.shape[1] <= s.column:
            raise events.BadEvent("shape", f"output '{s.output}' has {rows.shape[1]} columns; the score is "
                                           f"column {s.column}")
        return rows[:, [s.column]]

    def verdict(self, window: ClosedWindow) -> dict:
        return self.judge(window.present("inputs"), window.present("outputs"))

    def judge(self, x: np.ndarray, scores: np.ndarray) -> dict:
        """The verdict on a window's feature rows ``x`` and scores ``[n, 1]`` (either may be empty): what the
        sidecar says of a closed window, and what ``make eval-drift`` asks of windows it draws itself."""
        start = time.perf_counter()
        tests, thresholds, flags = [], {}, []
        if len(x) >= MIN_TEST_ROWS:
            result = self.features.predict(encode_missing(x, self.categorical), drift_type="batch",
                                           return_p_val=True, return_distance=True)["data"]
            for j, name in enumerate(self.names):
                test = "chi2" if j in self.categorical else "KS"
                tests.append(Test(name, test, float(result["p_val"][j]), float(result["distance"][j])))
            thresholds["features"] = strictest(result["threshold"])
            flags.append(bool(result["is_drift"]))
        score = None
        scores = scores[np.isfinite(scores[:, 0])] if len(scores) else scores
        if self.score is not None and len(scores) >= MIN_TEST_ROWS:
            result = self.score.predict(scores, return_p_val=True, return_distance=True)["data"]
            score = Test("score", self.settings.score.test, float(np.ravel(result["p_val"])[0]),
                         float(np.ravel(result["distance"])[0]))
            thresholds["score"] = strictest(result["threshold"])
            flags.append(bool(result["is_drift"]))
        return {"is_drift": any(flags), "tested": bool(flags), "features": [t.to_dict() for t in tests],
                "score": score.to_dict() if score else None, "threshold": thresholds,
                "rows_tested": {"inputs": len(x), "outputs": len(scores)},
                "detector_seconds": time.perf_counter() - start}


class EmbeddingDetector:
    kind = "KSDrift"

    def __init__(self, settings: KSDriftSettings, reference: dict[str, np.ndarray]):
        from alibi_detect.cd import KSDrift

        self.settings = settings
        ref = np.asarray(reference[settings.reference_array], dtype=np.float64)
        if ref.ndim != 2 or ref.shape[1] != settings.dim:
            raise ValueError(f"reference '{settings.reference_array}' is {ref.shape}; [n, {settings.dim}] is needed")
        self.detector = KSDrift(ref, p_val=settings.p_val, correction=settings.correction)
        self.needs = frozenset({RESPONSE})
        self.widths = {"inputs": 0, "outputs": settings.dim}

    def extract(self, event: events.InferenceEvent) -> np.ndarray | None:
        if event.kind == REQUEST:
            return None  # the image itself is never kept
        rows = events.tensor(event.body, RESPONSE, self.settings.output if "outputs" in event.body else None)
        if rows.shape[1] != self.settings.dim:
            raise events.BadEvent("shape", f"output '{self.settings.output}' has {rows.shape[1]} columns; the "
                                           f"reference has {self.settings.dim}")
        return rows

    def verdict(self, window: ClosedWindow) -> dict:
        return self.judge(window.present("outputs"))

    def judge(self, y: np.ndarray) -> dict:
        """The verdict on a window's embeddings ``[n, dim]``."""
        start = time.perf_counter()
        if len(y) < MIN_TEST_ROWS:
            return {"is_drift": False, "tested": False, "features": [], "score": None, "threshold": {},
                    "rows_tested": {"outputs": len(y)}, "detector_seconds": 0.0}
        result = self.detector.predict(y, drift_type="batch", return_p_val=True, return_distance=True)["data"]
        p_val, distance = np.asarray(result["p_val"]), np.asarray(result["distance"])
        threshold = strictest(result["threshold"])
        lowest = np.argsort(p_val)[:REPORTED_DIMS]  # a verdict stays small: the dimensions that moved most
        tests = [Test(f"{self.settings.output}[{j}]", "KS", float(p_val[j]), float(distance[j])) for j in lowest]
        return {"is_drift": bool(result["is_drift"]), "tested": True, "features": [t.to_dict() for t in tests],
                "dims": len(p_val), "drifted_dims": int(np.sum(p_val < threshold)),
                "score": None, "threshold": {"features": threshold},
                "rows_tested": {"outputs": len(y)}, "detector_seconds": time.perf_counter() - start}


def build(bundle: Bundle, input_name: str | None = None):
    """The detector a bundle's drift settings describe, fitted on its reference arrays."""
    with np.load(bundle.drift_reference_path) as arrays:
        reference = {name: arrays[name] for name in arrays.files}
    settings = bundle.drift
    if isinstance(settings, TabularDriftSettings):
        return TabularDetector(settings, reference, input_name or getattr(bundle.schema, "model_input", None))
    return EmbeddingDetector(settings, reference)
