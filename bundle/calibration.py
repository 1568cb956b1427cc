"""``calibration.json`` (optional): how the served probability is made from the model's, and what the
served threshold means.

* ``method``: ``identity`` (the model's probability as is), ``platt`` (``sigmoid(a * logit(p) + b)``, with
  ``p`` clipped to ``[EPS, 1 - EPS]`` first) or ``isotonic`` (piecewise-linear through the points
  ``x`` → ``y``, flat beyond the first and last point). Every method is monotone, so ranking (ROC-AUC)
  is what the model's was.
* ``operating_point``: the target sensitivity the threshold was chosen for, on scores of patients the model
  did not train on, and that threshold (on the served probability). It equals ``schema.json``'s threshold.
* ``fitted_on``, ``n``, ``brier_before``, ``brier_after``: where the map was fitted and what it did there.

Whatever computes the served probability applies the map; a bundle without this file serves the model's
probability. The drift reference score stays the model's own output (what the predictor returns).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from pathlib import Path

from bundle import _fields as f
from bundle.layout import CALIBRATION

IDENTITY, PLATT, ISOTONIC = "identity", "platt", "isotonic"
METHODS = (IDENTITY, PLATT, ISOTONIC)
EPS = 1e-6


def _non_decreasing(values: tuple[float, ...]) -> bool:
    return all(values[i] <= values[i + 1] for i in range(len(values) - 1))


@dataclass(frozen=True)
class OperatingPoint:
    target_sensitivity: float
    threshold: float


@dataclass(frozen=True)
class Calibration:
    method: str = IDENTITY
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    operating_point: OperatingPoint | None = None
    fitted_on: str = ""
    n: int = 0
    brier_before: float | None = None
    brier_after: float | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.method == ISOTONIC:
            if len(self.x) < 1 or len(self.x) != len(self.y):
                raise ValueError(f"isotonic needs x and y of one length (got {len(self.x)} and {len(self.y)})")
            if not (_non_decreasing(self.x) and _non_decreasing(self.y)):
                raise ValueError("isotonic x and y must be non-decreasing")
            if any(not 0 <= v <= 1 for v in (*self.x, *self.y)):
                raise ValueError("isotonic x and y must lie in [0, 1]")
        if self.method == PLATT and self.a <= 0:
            raise ValueError(f"platt slope a={self.a} must be positive (the map must keep the ranking)")

    def apply_one(self, p: float) -> float:
        """The reference definition, one probability at a time (serving vectorises the same formulas)."""
        if self.method == PLATT:
            q = min(max(p, EPS), 1 - EPS)
            return 1 / (1 + math.exp(-(self.a * math.log(q / (1 - q)) + self.b)))
        if self.method == ISOTONIC:
            if p <= self.x[0]:
                return self.y[0]
            if p >= self.x[-1]:
                return self.y[-1]
            i = bisect.bisect_right(self.x, p)
            x0, x1, y0, y1 = self.x[i - 1], self.x[i], self.y[i - 1], self.y[i]
            return y0 if x1 == x0 else y0 + (y1 - y0) * (p - x0) / (x1 - x0)
        return p

    def to_dict(self) -> dict:
        out = {"method": self.method, "fitted_on": self.fitted_on, "n": self.n,
               "brier_before": self.brier_before, "brier_after": self.brier_after}
        if self.method == PLATT:
            out["platt"] = {"a": self.a, "b": self.b}
        if self.method == ISOTONIC:
            out["isotonic"] = {"x": list(self.x), "y": list(self.y)}
        if self.operating_point is not None:
            out["operating_point"] = {"target_sensitivity": self.operating_point.target_sensitivity,
                                      "threshold": self.operating_point.threshold}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        method = f.text(data, "method", choices=METHODS)
        a = b = None
        x = y = ()
        if method == PLATT:
            platt = f.obj(data, "platt")
            a, b = f.number(platt, "a", "platt."), f.number(platt, "b", "platt.")
        if method == ISOTONIC:
            iso = f.obj(data, "isotonic")
            x, y = f.numbers(iso, "x", "isotonic."), f.numbers(iso, "y", "isotonic.")
        point = None
        if "operating_point" in data:
            op = f.obj(data, "operating_point")
            point = OperatingPoint(f.number(op, "target_sensitivity", "operating_point.", low=0, high=1),
                                   f.number(op, "threshold", "operating_point.", low=0, high=1))
        try:
            return cls(method, 1.0 if a is None else a, 0.0 if b is None else b, x, y, point,
                       f.text(data, "fitted_on") if data.get("fitted_on", "") != "" else "", f.integer(data, "n", default=0),
                       f.number(data, "brier_before", default=None), f.number(data, "brier_after", default=None))
        except ValueError as err:
            if isinstance(err, f.FieldError):
                raise
            raise f.FieldError(str(err)) from None

    def write(self, folder: Path) -> Path:
        from bundle.writer import write_json

        return write_json(folder, CALIBRATION, self.to_dict())

    @classmethod
    def read(cls, folder: Path) -> Calibration:
        return f.read_typed(folder, CALIBRATION, cls.from_dict)
