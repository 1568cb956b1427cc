"""The image preprocessing contract shared by training, evaluation and the serving bundle.

Policy ``resize``: decode, convert to ``L`` (1 channel) or ``RGB`` (3 channels), resize to H×W with
bilinear filtering, scale to [0, 1], normalise per channel by ``mean`` / ``std``. Training stores
the uint8 result of the first three steps; :func:`normalise` does the rest, exactly as serving does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

RESIZE_POLICY = "resize"


@dataclass(frozen=True)
class ImageContract:
    height: int
    width: int
    channels: int  # 1 (L) or 3 (RGB)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: str = RESIZE_POLICY

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, not {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError("mean and std need one value per channel")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ImageContract:
        return cls(int(data["height"]), int(data["width"]), int(data["channels"]),
                   tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"]),
                   data.get("resize", RESIZE_POLICY))


def to_uint8(image: Image.Image, height: int, width: int, channels: int) -> np.ndarray:
    """Decoded image → uint8 array (H, W, C): mode conversion, then bilinear resize."""
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, H, W, C) on the [0, 1] scale."""
    scaled = images.astype(np.float64) / 255.0
    mean = scaled.mean(axis=(0, 1, 2))
    std = np.maximum(scaled.std(axis=(0, 1, 2)), 1e-3)
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


def normalise(images: np.ndarray, contract: ImageContract) -> np.ndarray:
    """uint8 (N, H, W, C) → float32 (N, C, H, W) normalised: the model's input."""
    x = images.astype(np.float32) / 255.0
    x = (x - np.asarray(contract.mean, np.float32)) / np.asarray(contract.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
