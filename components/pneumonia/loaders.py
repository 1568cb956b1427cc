"""Read the two chest X-ray formats users have, without decoding anything up front.

- Kermany/Kaggle folder layout: ``<root>/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg`` (the real
  archive nests it as ``chest_xray/chest_xray/...`` and ships ``__MACOSX`` noise; both are handled).
- MedMNIST ``pneumoniamnist*.npz`` (any size: 28, 64, 128, 224): arrays ``{split}_images``
  (N, H, W) or (N, H, W, 3) uint8 and ``{split}_labels`` (N, 1), 0 = normal, 1 = pneumonia.

Both become a list of :class:`ImageRecord`; :func:`open_image` decodes one record and raises
:class:`CorruptImage` (never a PIL internal error) when it cannot.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from components.pneumonia.labels import CLASSES

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
# A decompression bomb guard: far above real X-rays (~2000 × 2500), far below what exhausts memory.
MAX_PIXELS = 50_000_000


class CorruptImage(ValueError):
    """A file (or array entry) that does not decode to an image."""


@dataclass(frozen=True)
class ImageRecord:
    split: str
    label: int  # index into CLASSES
    source: str  # file path, or the npz path
    index: int = -1  # position in the npz arrays; -1 for files

    @property
    def name(self) -> str:
        return self.source if self.index < 0 else f"{self.source}#{self.split}[{self.index}]"


@dataclass
class Inventory:
    """Everything found under a dataset root."""

    format: str  # "kaggle" | "medmnist"
    root: str
    records: list[ImageRecord]
    ignored: list[str]  # files that are not images of a known class (reported, not loaded)


def find_kaggle_root(root: Path, max_depth: int = 3) -> Path | None:
    """The folder holding ``train``/``test`` class folders, searched a few levels down."""
    root = Path(root)
    candidates = [root]
    for _ in range(max_depth + 1):
        next_level = []
        for folder in candidates:
            if any((folder / s / c).is_dir() for s in SPLITS for c in CLASSES):
                return folder
            next_level += [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(("__", "."))]
        candidates = next_level
    return None


def scan_kaggle(root: Path) -> Inventory:
    base = find_kaggle_root(root)
    if base is None:
        raise FileNotFoundError(f"no {{train,val,test}}/{{{','.join(CLASSES)}}} folders under {root}")
    records, ignored = [], []
    for split in SPLITS:
        split_dir = base / split
        if not split_dir.is_dir():
            continue
        for path in sorted(p for p in split_dir.rglob("*") if p.is_file()):
            cls = path.parent.name.upper()
            if cls in CLASSES and path.parent.parent == split_dir and path.suffix.lower() in IMAGE_SUFFIXES \
                    and not path.name.startswith("."):
                records.append(ImageRecord(split, CLASSES.index(cls), str(path)))
            else:
                ignored.append(str(path))
    return Inventory("kaggle", str(base), records, ignored)


def find_npz(root: Path) -> Path | None:
    root = Path(root)
    if root.is_file() and root.suffix == ".npz":
        return root
    if root.is_dir():
        found = sorted(root.glob("*mnist*.npz")) or sorted(root.glob("*.npz"))
        return found[0] if found else None
    return None


def scan_medmnist(path: Path) -> Inventory:
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        records = []
        for split in SPLITS:
            if f"{split}_images" not in keys:
                continue
            labels = np.asarray(data[f"{split}_labels"]).reshape(-1).astype(int)
            if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
                raise ValueError(f"{path}: {split}_labels hold classes outside 0..{len(CLASSES) - 1}")
            records += [ImageRecord(split, int(y), str(path), i) for i, y in enumerate(labels)]
    if not records:
        raise ValueError(f"{path} holds no {{split}}_images arrays (is it a MedMNIST file?)")
    return Inventory("medmnist", str(path), records, [])


def scan(root: str | Path) -> Inventory:
    """Detect the format under ``root`` (a folder or an ``.npz`` file) and list its images."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no dataset at {root}")
    npz = find_npz(root)
    if npz is not None and (root.is_file() or find_kaggle_root(root) is None):
        return scan_medmnist(npz)
    return scan_kaggle(root)


class _NpzCache:
    """Keep the last opened npz in memory: records of one file are read in sequence."""

    def __init__(self):
        self.path: str | None = None
        self.arrays: dict[str, np.ndarray] = {}

    def get(self, path: str, key: str) -> np.ndarray:
        if path != self.path:
            with np.load(path, allow_pickle=False) as data:
                self.arrays = {k: data[k] for k in data.files}
            self.path = path
        return self.arrays[key]


_npz_cache = _NpzCache()


def read_bytes(record: ImageRecord) -> bytes:
    """The raw content that identifies an image (file bytes, or the array's bytes)."""
    if record.index < 0:
        return Path(record.source).read_bytes()
    return np.ascontiguousarray(_npz_cache.get(record.source, f"{record.split}_images")[record.index]).tobytes()


def content_hash(record: ImageRecord) -> str:
    return hashlib.sha256(read_bytes(record)).hexdigest()


def open_image(record: ImageRecord) -> Image.Image:
    """Decode one record fully (lazy PIL loads would fail later, far from the file's name)."""
    if record.index >= 0:
        array = _npz_cache.get(record.source, f"{record.split}_images")[record.index]
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
            raise CorruptImage(f"{record.name}: array of shape {array.shape} is not an image")
        return Image.fromarray(np.asarray(array, dtype=np.uint8))
    try:
        data = Path(record.source).read_bytes()
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_PIXELS:
            raise CorruptImage(f"{record.name}: {image.width}x{image.height} exceeds {MAX_PIXELS} pixels")
        image.load()
    except CorruptImage:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise CorruptImage(f"{record.name}: {type(err).__name__}: {err}") from err
    if image.mode not in {"L", "RGB", "RGBA", "LA", "P", "I", "I;16", "F", "CMYK", "1", "YCbCr"}:
        raise CorruptImage(f"{record.name}: unsupported image mode {image.mode}")
    if image.mode in {"I", "I;16", "F"}:  # 16-bit PNG X-rays: rescale to 8 bits before conversion
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255 if high > low else np.zeros_like(array)
        image = Image.fromarray(scaled.round().astype(np.uint8))
    return image
