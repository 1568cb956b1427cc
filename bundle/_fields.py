"""Reading typed fields out of parsed JSON with messages that name the field (standard library only)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bundle.errors import MalformedFile, MissingFile


class FieldError(ValueError):
    """A wrong field; the reader that caught it adds the bundle and file."""


def load_json(folder: Path, name: str) -> dict:
    path = Path(folder) / name
    if not path.is_file():
        raise MissingFile(folder, name, "missing")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MalformedFile(folder, name, f"not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise MalformedFile(folder, name, f"a JSON object is needed, not {type(data).__name__}")
    return data


def read_typed(folder: Path, name: str, parse):
    """``parse`` of the JSON file ``name``; a wrong field becomes a MalformedFile naming the file."""
    data = load_json(folder, name)
    try:
        return parse(data)
    except FieldError as err:
        raise MalformedFile(folder, name, str(err)) from None


def tagged(data: dict, key: str, shapes: dict):
    """The typed shape that field ``key`` names (e.g. ``kind`` or ``detector``), read by its ``from_dict``."""
    return shapes[text(data, key, choices=tuple(shapes))].from_dict(data)


def obj(data: dict, key: str, where: str = "") -> dict:
    value = _get(data, key, where)
    if not isinstance(value, dict):
        raise FieldError(f"{where}{key}: an object is needed, got {value!r}")
    return value


def text(data: dict, key: str, where: str = "", default=..., choices=None) -> str:
    value = _get(data, key, where, default)
    if value is None and default is None:
        return None
    if not isinstance(value, str) or not value:
        raise FieldError(f"{where}{key}: a non-empty string is needed, got {value!r}")
    if choices is not None and value not in choices:
        raise FieldError(f"{where}{key}: {value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def number(data: dict, key: str, where: str = "", default=..., low=-math.inf, high=math.inf) -> float | None:
    value = _get(data, key, where, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FieldError(f"{where}{key}: a finite number is needed, got {value!r}")
    if not low <= value <= high:
        raise FieldError(f"{where}{key}: {value!r} is outside [{low}, {high}]")
    return float(value)


def integer(data: dict, key: str, where: str = "", default=..., low: int = 0) -> int | None:
    value = _get(data, key, where, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(f"{where}{key}: an integer is needed, got {value!r}")
    if value < low:
        raise FieldError(f"{where}{key}: {value} is below {low}")
    return value


def boolean(data: dict, key: str, where: str = "", default=...) -> bool:
    value = _get(data, key, where, default)
    if not isinstance(value, bool):
        raise FieldError(f"{where}{key}: true or false is needed, got {value!r}")
    return value


def strings(data: dict, key: str, where: str = "", default=..., min_len: int = 1) -> tuple[str, ...]:
    value = _get(data, key, where, default)
    if not isinstance(value, (list, tuple)) or len(value) < min_len or not all(
            isinstance(v, str) and v for v in value):
        raise FieldError(f"{where}{key}: a list of at least {min_len} non-empty strings is needed, got {value!r}")
    if len(set(value)) != len(value):
        raise FieldError(f"{where}{key}: names repeat in {value!r}")
    return tuple(value)


def numbers(data: dict, key: str, where: str = "", length: int | None = None) -> tuple[float, ...]:
    value = _get(data, key, where)
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise FieldError(f"{where}{key}: a list of finite numbers is needed, got {value!r}")
    if length is not None and len(value) != length:
        raise FieldError(f"{where}{key}: {length} values are needed, got {len(value)}")
    return tuple(float(v) for v in value)


def _get(data: dict, key: str, where: str, default=...):
    if key in data:
        return data[key]
    if default is ...:
        raise FieldError(f"{where}{key}: missing")
    return default
