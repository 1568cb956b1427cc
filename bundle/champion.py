"""``<store>/<workload>/champion.json``: which bundle holds the registry's ``champion`` alias.

Written by training (under the registry lock, after the alias moved); read by serving when no bundle
is named and by the drift sidecar.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from bundle import _fields as f
from bundle import storage
from bundle.errors import MalformedFile
from bundle.layout import CHAMPION_POINTER


@dataclass(frozen=True)
class ChampionPointer:
    workload: str
    model_name: str
    model_version: str
    bundle_uri: str
    updated_at: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str) -> ChampionPointer:
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise f.FieldError("a JSON object is needed")
            return cls(f.text(data, "workload"), f.text(data, "model_name"), f.text(data, "model_version"),
                       f.text(data, "bundle_uri"), f.number(data, "updated_at", default=0.0))
        except (json.JSONDecodeError, f.FieldError) as err:
            raise MalformedFile(where, None, f"champion pointer: {err}") from None


def bundle_uri(store: str, workload: str, version: str) -> str:
    return storage.join(store, workload, str(version))


def pointer_uri(store: str, workload: str) -> str:
    return storage.join(store, workload, CHAMPION_POINTER)


def read(store: str, workload: str, s3: storage.S3Config | None = None) -> ChampionPointer | None:
    """The champion pointer, or None when nothing was promoted yet."""
    uri = pointer_uri(store, workload)
    try:
        text = storage.read_text(uri, s3)
    except FileNotFoundError:
        return None
    return ChampionPointer.from_json(text, uri)


def write(store: str, pointer: ChampionPointer, s3: storage.S3Config | None = None) -> str:
    uri = pointer_uri(store, pointer.workload)
    storage.write_text(uri, pointer.to_json(), s3)
    return uri
