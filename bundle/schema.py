"""``schema.json``: the typed input schema the transformer validates requests against.

Two kinds: :class:`TabularSchema` (features with kinds, ranges, categories and missing-value rules,
the model's input matrix, the decision threshold and risk levels) and :class:`ImageSchema` (the
image preprocessing: size, channels, normalisation, pixel limit). ``to_dict`` / ``from_dict`` are the
JSON form; ``from_dict`` names the field that is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bundle import _fields as f
from bundle.layout import SCHEMA

NUMERIC = "numeric"
CATEGORICAL = "categorical"
TABULAR = "tabular"
IMAGE = "image"
MISSING_NAN = "NaN"  # how a missing value reaches the model: NaN in a float matrix, imputed by the pipeline


@dataclass(frozen=True)
class NumericFeature:
    name: str
    min: float | None = None
    max: float | None = None
    unit: str | None = None
    nullable: bool = False  # may be missing (sent as null); the model imputes it
    title: str | None = None  # the clinical name shown to people ("ST depression"); the name if none
    kind: str = field(default=NUMERIC, init=False)

    def to_dict(self) -> dict:
        return _titled({"kind": NUMERIC, "min": self.min, "max": self.max, "unit": self.unit,
                        "nullable": self.nullable}, self.title)

    @property
    def display_name(self) -> str:
        return self.title or self.name


@dataclass(frozen=True)
class CategoricalFeature:
    name: str
    codes: dict[int, str]  # model code -> canonical label
    labels: dict[str, int] = field(default_factory=dict)  # accepted lower-case text (synonyms) -> code
    nullable: bool = False
    title: str | None = None  # the clinical name shown to people ("chest pain type"); the name if none
    kind: str = field(default=CATEGORICAL, init=False)

    def __post_init__(self):
        accepted = dict(self.labels)
        for code, label in self.codes.items():  # every code is accepted as text and by its label
            accepted.setdefault(str(code), code)
            accepted.setdefault(f"{code}.0", code)
            accepted.setdefault(label.lower(), code)
        object.__setattr__(self, "labels", accepted)

    def to_dict(self) -> dict:
        return _titled({"kind": CATEGORICAL, "codes": {str(c): label for c, label in self.codes.items()},
                        "labels": dict(self.labels), "nullable": self.nullable}, self.title)

    @property
    def display_name(self) -> str:
        return self.title or self.name


def _titled(spec: dict, title: str | None) -> dict:
    return spec | {"title": title} if title else spec  # written only when set: older readers see no new key


Feature = NumericFeature | CategoricalFeature


@dataclass(frozen=True)
class TabularSchema:
    workload: str
    features: tuple[Feature, ...]  # in the model's column order
    classes: tuple[str, str] = ("negative", "positive")
    positive_class: str = "positive"
    threshold: float = 0.5
    risk_medium: float = 0.3
    risk_high: float = 0.6
    model_input: str = "features"  # the predictor's input tensor: FP64 [N, len(features)], NaN = missing
    missing: str = MISSING_NAN
    kind: str = field(default=TABULAR, init=False)

    def __post_init__(self):
        if self.positive_class not in self.classes:
            raise ValueError(f"positive_class {self.positive_class!r} is not one of {self.classes}")
        if not 0 <= self.risk_medium <= self.risk_high <= 1:
            raise ValueError(f"risk levels need 0 <= medium ({self.risk_medium}) <= high ({self.risk_high}) <= 1")
        names = [feature.name for feature in self.features]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"feature names must be unique and non-empty: {names}")

    @property
    def feature_order(self) -> tuple[str, ...]:
        return tuple(feature.name for feature in self.features)

    def feature(self, name: str) -> Feature:
        return next(feature for feature in self.features if feature.name == name)

    def to_dict(self) -> dict:
        return {"kind": TABULAR, "workload": self.workload, "feature_order": list(self.feature_order),
                "features": {feature.name: feature.to_dict() for feature in self.features},
                "model_input": {"name": self.model_input, "datatype": "FP64",
                                "shape": [-1, len(self.features)], "missing": self.missing},
                "classes": list(self.classes), "positive_class": self.positive_class,
                "threshold": self.threshold, "risk_levels": {"medium": self.risk_medium, "high": self.risk_high}}

    @classmethod
    def from_dict(cls, data: dict) -> TabularSchema:
        order = f.strings(data, "feature_order")
        specs = f.obj(data, "features")
        unlisted = sorted(set(specs) - set(order))
        if unlisted:
            raise f.FieldError(f"features.{unlisted[0]}: not in feature_order")
        features = []
        for name in order:
            spec = f.obj(specs, name, "features.")
            where = f"features.{name}."
            kind = f.text(spec, "kind", where, choices=(NUMERIC, CATEGORICAL))
            nullable = f.boolean(spec, "nullable", where)
            title = f.text(spec, "title", where, None)
            if kind == NUMERIC:
                low, high = f.number(spec, "min", where, None), f.number(spec, "max", where, None)
                if low is not None and high is not None and low > high:
                    raise f.FieldError(f"{where}min {low} is above max {high}")
                features.append(NumericFeature(name, low, high, f.text(spec, "unit", where, None), nullable, title))
                continue
            raw_codes = f.obj(spec, "codes", where)
            if not raw_codes:
                raise f.FieldError(f"{where}codes: at least one category is needed")
            codes = {}
            for code, label in raw_codes.items():
                if not code.lstrip("-").isdigit() or not isinstance(label, str):
                    raise f.FieldError(f"{where}codes.{code}: an integer code with a text label is needed")
                codes[int(code)] = label
            labels = f.obj(spec, "labels", where) if "labels" in spec else {}
            bad = [text for text, code in labels.items() if code not in codes]
            if bad:
                raise f.FieldError(f"{where}labels.{bad[0]}: maps to {labels[bad[0]]!r}, which is not a code")
            features.append(CategoricalFeature(name, codes, dict(labels), nullable, title))
        model_input = f.obj(data, "model_input")
        risk = f.obj(data, "risk_levels")
        try:
            return cls(workload=f.text(data, "workload"), features=tuple(features),
                       classes=f.strings(data, "classes", min_len=2)[:2],
                       positive_class=f.text(data, "positive_class"),
                       threshold=f.number(data, "threshold", low=0, high=1),
                       risk_medium=f.number(risk, "medium", "risk_levels.", low=0, high=1),
                       risk_high=f.number(risk, "high", "risk_levels.", low=0, high=1),
                       model_input=f.text(model_input, "name", "model_input."),
                       missing=f.text(model_input, "missing", "model_input.", choices=(MISSING_NAN,)))
        except ValueError as err:
            raise f.FieldError(str(err)) from None


@dataclass(frozen=True)
class ImagePreprocessing:
    """decode → L (1 channel) or RGB (3) → bilinear resize to height × width → /255 → (x - mean) / std."""

    height: int
    width: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: str = "resize"

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, not {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError("mean and std need one value per channel")
        if min(self.std) <= 0 or self.height < 1 or self.width < 1:
            raise ValueError("std must be positive and the size at least 1×1")

    def to_dict(self) -> dict:
        return {"height": self.height, "width": self.width, "channels": self.channels, "mean": list(self.mean),
                "std": list(self.std), "resize": self.resize}

    @classmethod
    def from_dict(cls, data: dict, where: str = "") -> ImagePreprocessing:
        channels = f.integer(data, "channels", where, low=1)
        try:
            return cls(f.integer(data, "height", where, low=1), f.integer(data, "width", where, low=1), channels,
                       f.numbers(data, "mean", where, channels), f.numbers(data, "std", where, channels),
                       f.text(data, "resize", where, "resize", choices=("resize",)))
        except ValueError as err:
            raise f.FieldError(f"{where.rstrip('.')}: {err}") from None


@dataclass(frozen=True)
class ImageSchema:
    workload: str
    image: ImagePreprocessing
    classes: tuple[str, ...] = ("NORMAL", "PNEUMONIA")
    positive_class: str = "PNEUMONIA"
    threshold: float = 0.5
    max_pixels: int = 50_000_000  # width × height of one image, checked from its header before decoding
    input_name: str = "image"  # BYTES [N] of JPEG/PNG files
    kind: str = field(default=IMAGE, init=False)

    def __post_init__(self):
        if self.positive_class not in self.classes:
            raise ValueError(f"positive_class {self.positive_class!r} is not one of {self.classes}")

    def to_dict(self) -> dict:
        return {"kind": IMAGE, "workload": self.workload, "input": {"name": self.input_name, "datatype": "BYTES"},
                "image": self.image.to_dict(), "classes": list(self.classes), "positive_class": self.positive_class,
                "threshold": self.threshold, "max_pixels": self.max_pixels}

    @classmethod
    def from_dict(cls, data: dict) -> ImageSchema:
        try:
            return cls(workload=f.text(data, "workload"),
                       image=ImagePreprocessing.from_dict(f.obj(data, "image"), "image."),
                       classes=f.strings(data, "classes", min_len=2), positive_class=f.text(data, "positive_class"),
                       threshold=f.number(data, "threshold", low=0, high=1),
                       max_pixels=f.integer(data, "max_pixels", low=1),
                       input_name=f.text(f.obj(data, "input"), "name", "input."))
        except ValueError as err:
            if isinstance(err, f.FieldError):
                raise
            raise f.FieldError(str(err)) from None


Schema = TabularSchema | ImageSchema
_KINDS = {TABULAR: TabularSchema, IMAGE: ImageSchema}


def parse(data: dict) -> Schema:
    """A schema from its JSON form; raises ``_fields.FieldError`` naming the field."""
    return f.tagged(data, "kind", _KINDS)


def read(folder: Path) -> Schema:
    return f.read_typed(folder, SCHEMA, parse)
