"""Split: decode every usable image once, apply the preprocessing contract's resize, and write
train / val / test arrays plus the contract (size, channels, mean/std from train).

Leakage is removed here whatever validation allowed: an image whose content is in test is dropped
from train and val, one in val is dropped from train. Kermany's real val split has 16 images, so a
val split that is too small is merged into train and a stratified share is carved out instead.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from components.pneumonia import loaders, preprocess

CONTRACT_FILE = "contract.json"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class SplitConfig:
    height: int = 64
    width: int = 64
    channels: int = 1
    val_fraction: float = 0.2
    min_val: int = 32
    seed: int = 0


@dataclass
class Arrays:
    x: np.ndarray  # uint8 (N, H, W, C)
    y: np.ndarray  # int64 (N,)

    def __len__(self) -> int:
        return len(self.y)


def _empty(cfg: SplitConfig) -> Arrays:
    return Arrays(np.zeros((0, cfg.height, cfg.width, cfg.channels), np.uint8), np.zeros(0, np.int64))


def _stack(items: list[tuple[np.ndarray, int]], cfg: SplitConfig) -> Arrays:
    if not items:
        return _empty(cfg)
    return Arrays(np.stack([x for x, _ in items]), np.asarray([y for _, y in items], np.int64))


def _stratified_take(arrays: Arrays, fraction: float, seed: int) -> tuple[Arrays, Arrays]:
    """(rest, taken): ``fraction`` of each class, at least one per class when it has two."""
    rng = np.random.default_rng(seed)
    take = []
    for cls in np.unique(arrays.y):
        idx = np.flatnonzero(arrays.y == cls)
        rng.shuffle(idx)
        n = int(round(len(idx) * fraction))
        take += list(idx[: max(n, 1 if len(idx) > 1 else 0)])
    mask = np.zeros(len(arrays), bool)
    mask[take] = True
    return Arrays(arrays.x[~mask], arrays.y[~mask]), Arrays(arrays.x[mask], arrays.y[mask])


def build_splits(root: str, cfg: SplitConfig = SplitConfig()) -> tuple[dict[str, Arrays], dict]:
    inventory = loaders.scan(root)
    items: dict[str, list[tuple[np.ndarray, int]]] = {s: [] for s in loaders.SPLITS}
    digests: dict[str, list[str]] = {s: [] for s in loaders.SPLITS}
    skipped_corrupt = 0
    for record in inventory.records:
        try:
            image = loaders.open_image(record)
        except loaders.CorruptImage:
            skipped_corrupt += 1
            continue
        items[record.split].append((preprocess.to_uint8(image, cfg.height, cfg.width, cfg.channels),
                                    record.label))
        digests[record.split].append(loaders.content_hash(record))

    dropped = {}
    for split, later in (("train", ("val", "test")), ("val", ("test",))):
        banned = set().union(*(digests[s] for s in later))
        keep = [i for i, d in enumerate(digests[split]) if d not in banned]
        dropped[split] = len(items[split]) - len(keep)
        items[split] = [items[split][i] for i in keep]

    splits = {s: _stack(items[s], cfg) for s in loaders.SPLITS}
    val_y = splits["val"].y
    carved = False
    if len(val_y) < cfg.min_val or len(np.unique(val_y)) < 2:
        merged = Arrays(np.concatenate([splits["train"].x, splits["val"].x]),
                        np.concatenate([splits["train"].y, splits["val"].y]))
        splits["train"], splits["val"] = _stratified_take(merged, cfg.val_fraction, cfg.seed)
        carved = True
    if len(splits["train"]) == 0 or len(splits["test"]) == 0:
        raise ValueError("split: train or test is empty after removing corrupt and leaked images")
    mean, std = preprocess.channel_stats(splits["train"].x)
    contract = preprocess.ImageContract(cfg.height, cfg.width, cfg.channels, mean, std)
    summary = {
        "format": inventory.format,
        "config": asdict(cfg),
        "contract": contract.to_dict(),
        "counts": {s: {"n": len(a), "positives": int(a.y.sum())} for s, a in splits.items()},
        "skipped_corrupt": skipped_corrupt,
        "dropped_leaked": dropped,
        "val_carved_from_train": carved,
    }
    return splits, summary


def save(splits: dict[str, Arrays], summary: dict, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, arrays in splits.items():
        np.savez(out_dir / f"{name}.npz", x=arrays.x, y=arrays.y)
    (out_dir / CONTRACT_FILE).write_text(json.dumps(summary["contract"], indent=2))
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return out_dir


def load(out_dir: Path, name: str) -> Arrays:
    with np.load(Path(out_dir) / f"{name}.npz", allow_pickle=False) as data:
        return Arrays(data["x"], data["y"].astype(np.int64))


def load_contract(out_dir: Path) -> preprocess.ImageContract:
    return preprocess.ImageContract.from_dict(json.loads((Path(out_dir) / CONTRACT_FILE).read_text()))
