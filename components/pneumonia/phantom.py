"""A seeded phantom chest X-ray set, the embedded default when no real data is given.

Images are grayscale, chest-like (dark lung fields inside a brighter body, a bright mediastinum,
faint ribs) with per-image anatomy, exposure and noise jitter. PNEUMONIA images additionally
carry one to three localized opacities (bright, soft blobs) inside a lung field; that is the
learnable signal. The set is written in the Kermany/Kaggle folder layout
(``{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg``) so the real loader path is the one exercised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from components.pneumonia.labels import CLASSES

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class PhantomSpec:
    """What to generate. ``counts`` is images per split (both classes together)."""

    counts: dict[str, int] = field(default_factory=lambda: {"train": 320, "val": 96, "test": 128})
    size: int = 128
    pneumonia_fraction: float = 0.5  # 0.5 = balanced; Kermany's real train split is ~0.74
    aspect_jitter: float = 0.15  # widths vary by up to ±15 %: the loaders must resize any shape
    rgb_fraction: float = 0.05  # a few files saved as RGB, like some real Kaggle JPEGs
    seed: int = 0


def _ellipse(yy, xx, cy, cx, ry, rx):
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2


def render(rng: np.random.Generator, height: int, width: int, pneumonia: bool) -> np.ndarray:
    """One phantom as float32 in [0, 1], shape (height, width)."""
    return render_with_opacities(rng, height, width, pneumonia)[0]


def render_with_opacities(rng: np.random.Generator, height: int, width: int, pneumonia: bool
                          ) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """One phantom, and where its opacities are: ``(y, x, sigma)`` each, as fractions of the height (y,
    sigma) and width (x); the same image :func:`render` draws from the same generator state."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy /= height
    xx /= width
    img = np.full((height, width), 0.08, np.float32)
    # torso: a soft-edged bright ellipse
    torso = _ellipse(yy, xx, 0.55 + rng.normal(0, 0.01), 0.5, 0.55, 0.46 + rng.normal(0, 0.02))
    img += 0.45 * np.clip(1.2 - torso, 0, 1) ** 0.5
    lungs = []
    for side in (-1, 1):
        cy = 0.5 + rng.normal(0, 0.02)
        cx = 0.5 + side * (0.19 + rng.normal(0, 0.012))
        ry, rx = 0.29 * rng.uniform(0.9, 1.1), 0.13 * rng.uniform(0.9, 1.1)
        lungs.append((cy, cx, ry, rx))
        inside = np.clip(1.0 - _ellipse(yy, xx, cy, cx, ry, rx), 0, 1)
        img -= 0.33 * inside ** 0.35
    # mediastinum and spine
    img += 0.3 * np.exp(-((xx - 0.5) / 0.055) ** 2) * (yy > 0.2)
    # ribs: faint arcs over the lung fields
    phase = rng.uniform(0, 2 * np.pi)
    ribs = np.sin(2 * np.pi * (yy * 7.5 + 0.6 * (xx - 0.5) ** 2 * 4) + phase)
    img += 0.04 * np.clip(ribs, 0, 1)
    opacities = []
    if pneumonia:
        for _ in range(int(rng.integers(1, 4))):
            cy, cx, ry, rx = lungs[int(rng.integers(0, 2))]
            # a point inside the lung ellipse
            r, t = np.sqrt(rng.uniform(0, 0.7)), rng.uniform(0, 2 * np.pi)
            by, bx = cy + r * ry * np.sin(t), cx + r * rx * np.cos(t)
            sigma = rng.uniform(0.06, 0.1)
            opacities.append((float(by), float(bx), float(sigma)))
            img += rng.uniform(0.3, 0.45) * np.exp(-(((yy - by) ** 2 + ((xx - bx) * width / height) ** 2)
                                                     / (2 * sigma ** 2)))
    # exposure, noise
    img = img * rng.uniform(0.85, 1.15) + rng.normal(0, 0.03)
    img += rng.normal(0, 0.025, img.shape).astype(np.float32)
    return np.clip(img, 0, 1), opacities


def generate(root: Path, spec: PhantomSpec = PhantomSpec()) -> dict[str, dict[str, int]]:
    """Write the phantom set under ``root``; returns ``{split: {class: count}}``."""
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    counts: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        n = int(spec.counts.get(split, 0))
        n_pos = int(round(n * spec.pneumonia_fraction))
        labels = np.array([1] * n_pos + [0] * (n - n_pos))
        rng.shuffle(labels)
        counts[split] = {c: 0 for c in CLASSES}
        for cls in CLASSES:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
        for i, label in enumerate(labels):
            width = int(round(spec.size * (1 + rng.uniform(-spec.aspect_jitter, spec.aspect_jitter))))
            pixels = (render(rng, spec.size, width, bool(label)) * 255).round().astype(np.uint8)
            image = Image.fromarray(pixels, mode="L")
            if rng.uniform() < spec.rgb_fraction:
                image = image.convert("RGB")
            cls = CLASSES[int(label)]
            image.save(root / split / cls / f"phantom-{split}-{i:05d}.jpeg", format="JPEG", quality=92)
            counts[split][cls] += 1
    return counts
