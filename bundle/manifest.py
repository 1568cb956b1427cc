"""``bundle.json``: what the bundle is, and the sha256 and size of every other file in it.

Readers call :meth:`Manifest.verify` before they load anything: a truncated ``model.joblib`` or a
replaced ``schema.json`` is refused with the name of the file, never unpickled.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bundle import _fields as f
from bundle.errors import IntegrityError, MalformedFile, MissingFile
from bundle.layout import FORMAT_VERSION, FRAMEWORKS, MANIFEST, MODEL_FILE, required_files

_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int

    @classmethod
    def of(cls, path: Path) -> FileEntry:
        return cls(sha256_of(path), Path(path).stat().st_size)


@dataclass
class Manifest:
    workload: str
    model_name: str
    model_version: str
    framework: str  # layout.SKLEARN | layout.PYTORCH
    files: dict[str, FileEntry] = field(default_factory=dict)  # bundle-relative POSIX name -> entry
    metrics: dict[str, float] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    promoted: bool = False
    format_version: int = FORMAT_VERSION
    created_at: float = field(default_factory=time.time)

    @property
    def model_file(self) -> str:
        return MODEL_FILE[self.framework]

    # -- writing ----------------------------------------------------------------------------------
    def record_files(self, folder: Path) -> None:
        """Hash every file under ``folder`` except the manifest itself."""
        folder = Path(folder)
        self.files = {p.relative_to(folder).as_posix(): FileEntry.of(p)
                      for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}

    def write(self, folder: Path) -> Path:
        path = Path(folder) / MANIFEST
        data = asdict(self)
        path.write_text(json.dumps(data, indent=2, sort_keys=True))
        return path

    # -- reading ----------------------------------------------------------------------------------
    @classmethod
    def read(cls, folder: Path) -> Manifest:
        data = f.load_json(folder, MANIFEST)
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise MalformedFile(folder, MANIFEST, f"bundle format {version!r}; this reader needs {FORMAT_VERSION} "
                                                  f"(export the model again)")
        try:
            files = f.obj(data, "files")
            entries = {}
            for name, entry in files.items():
                if not isinstance(entry, dict):
                    raise f.FieldError(f"files.{name}: an object with sha256 and size is needed")
                digest = f.text(entry, "sha256", f"files.{name}.")
                if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                    raise f.FieldError(f"files.{name}.sha256: not a hex sha256 digest")
                if name.startswith("/") or ".." in Path(name).parts:
                    raise f.FieldError(f"files.{name}: a name inside the bundle is needed")
                entries[name] = FileEntry(digest, f.integer(entry, "size", f"files.{name}."))
            metrics = f.obj(data, "metrics") if "metrics" in data else {}
            manifest = cls(
                workload=f.text(data, "workload"), model_name=f.text(data, "model_name"),
                model_version=f.text(data, "model_version"), framework=f.text(data, "framework", choices=FRAMEWORKS),
                files=entries, metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                mlflow_run_id=f.text(data, "mlflow_run_id", default=None),
                promoted=f.boolean(data, "promoted", default=False), format_version=version,
                created_at=f.number(data, "created_at", default=0.0))
        except f.FieldError as err:
            raise MalformedFile(folder, MANIFEST, str(err)) from None
        absent = [name for name in required_files(manifest.framework) if name not in manifest.files]
        if absent:
            raise MalformedFile(folder, MANIFEST, f"does not list {', '.join(absent)}")
        return manifest

    def verify(self, folder: Path) -> None:
        """Every listed file is there with the recorded size and sha256; else the first culprit is named."""
        folder = Path(folder)
        for name, entry in self.files.items():
            path = folder / name
            if not path.is_file():
                raise MissingFile(folder, name, "listed in the manifest but missing")
            size = path.stat().st_size
            if size != entry.size:
                raise IntegrityError(folder, name, f"{size} bytes; the manifest recorded {entry.size} "
                                                   f"(truncated or replaced)")
            if sha256_of(path) != entry.sha256:
                raise IntegrityError(folder, name, "sha256 differs from the manifest (the file was changed)")
