"""Validate an image dataset before training: decodability, sizes and channels, class balance, and
leakage (the same image content in more than one split).

Hard errors (the run fails with the report): no images, a split without both classes (train and
test), too many undecodable files, images shared across splits (unless allowed). Everything else is
reported with counts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from components.common.reports import ValidationReport
from components.pneumonia import loaders
from components.pneumonia.labels import CLASSES


@dataclass(frozen=True)
class ValidationPolicy:
    max_corrupt_fraction: float = 0.05
    allow_cross_split_duplicates: bool = False
    min_per_class: int = 2  # in train and in test


def _summary(values: list[int]) -> str:
    if not values:
        return "-"
    a = np.asarray(values)
    return f"min {a.min()} · median {int(np.median(a))} · max {a.max()}"


def validate(root: str, policy: ValidationPolicy = ValidationPolicy()) -> ValidationReport:
    report = ValidationReport(title="Pneumonia dataset validation")
    try:
        inventory = loaders.scan(root)
    except (FileNotFoundError, ValueError) as err:
        report.add("format", "error", str(err))
        return report
    report.stats["format"] = inventory.format
    report.stats["root"] = inventory.root
    records = inventory.records
    if inventory.ignored:
        report.add("ignored_files", "warning",
                   f"{len(inventory.ignored)} files are not images in a class folder, e.g. {inventory.ignored[0]}",
                   len(inventory.ignored))
    if not records:
        report.add("images", "error", "no images found")
        return report

    counts: dict[str, Counter] = defaultdict(Counter)
    corrupt: list[str] = []
    widths, heights = [], []
    modes: Counter = Counter()
    hashes: dict[str, set[str]] = defaultdict(set)
    occurrences: Counter = Counter()  # (hash, split) → count
    for record in records:
        try:
            image = loaders.open_image(record)
        except loaders.CorruptImage as err:
            corrupt.append(str(err))
            continue
        counts[record.split][CLASSES[record.label]] += 1
        widths.append(image.width)
        heights.append(image.height)
        modes[image.mode] += 1
        digest = loaders.content_hash(record)
        hashes[digest].add(record.split)
        occurrences[(digest, record.split)] += 1

    decodable = len(records) - len(corrupt)
    report.stats["images_found"] = len(records)
    report.stats["decodable"] = decodable
    report.stats["undecodable"] = len(corrupt)
    report.stats["width"] = _summary(widths)
    report.stats["height"] = _summary(heights)
    report.stats["modes"] = ", ".join(f"{m}: {n}" for m, n in modes.most_common())
    for split in loaders.SPLITS:
        split_counts = counts.get(split, Counter())
        total = sum(split_counts.values())
        report.stats[f"{split}_images"] = total
        if total:
            share = split_counts[CLASSES[1]] / total
            report.stats[f"{split}_balance"] = " · ".join(f"{c}: {split_counts[c]}" for c in CLASSES) + \
                f" ({share:.0%} {CLASSES[1]})"

    if corrupt:
        fraction = len(corrupt) / len(records)
        severity = "error" if fraction > policy.max_corrupt_fraction else "warning"
        report.add("undecodable", severity,
                   f"{len(corrupt)} of {len(records)} files do not decode ({fraction:.1%}; limit "
                   f"{policy.max_corrupt_fraction:.0%}); they are skipped. First: {corrupt[0]}", len(corrupt))
    else:
        report.add("undecodable", "info", f"all {len(records)} images decode", 0)

    for split in ("train", "test"):
        split_counts = counts.get(split, Counter())
        for cls in CLASSES:
            if split_counts[cls] < policy.min_per_class:
                report.add("class_balance", "error",
                           f"{split} has {split_counts[cls]} {cls} images (needs {policy.min_per_class})",
                           split_counts[cls])
    train = counts.get("train", Counter())
    if sum(train.values()):
        share = train[CLASSES[1]] / sum(train.values())
        if not 0.2 <= share <= 0.8:
            report.add("class_balance", "warning",
                       f"train is imbalanced ({share:.0%} {CLASSES[1]}); class weights compensate")
    if sum(counts.get("val", Counter()).values()) < 2 * policy.min_per_class:
        report.add("val_split", "info", "val split is small or missing; the split step carves one from train")

    shared = {h: s for h, s in hashes.items() if len(s) > 1}
    if shared:
        pairs = Counter("+".join(sorted(s)) for s in shared.values())
        message = (f"{len(shared)} images occur in more than one split (" +
                   ", ".join(f"{k}: {v}" for k, v in pairs.items()) + ")")
        if policy.allow_cross_split_duplicates:
            report.add("leakage", "warning", message + "; the split step drops them from train/val", len(shared))
        else:
            report.add("leakage", "error", message, len(shared))
    else:
        report.add("leakage", "info", "no image content is shared between splits", 0)
    duplicates_within = sum(n - 1 for n in occurrences.values())
    if duplicates_within > 0:
        report.add("duplicates", "warning", f"{duplicates_within} repeated images within a split",
                   duplicates_within)
    return report
