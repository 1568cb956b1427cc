"""The ``heatmap`` and ``hot_region`` outputs of an image workload, from the predictor's Grad-CAM map.

- ``heatmap`` BYTES ``[N]``: a PNG of the image as the model saw it (its input size) with the map laid
  over it in colour (blue → red as the map rises; transparent where it is zero). Raw PNG bytes over gRPC
  and binary REST; base64 text in JSON, marked by the output parameter ``clinops_base64``.
- ``hot_region`` FP32 ``[N, 4]``: ``x0, y0, x1, y1`` of the box around the hottest region (where the map
  is at least :data:`HOT` of its peak), as fractions of the image's width and height, so it lands on the
  original image whatever its size (the transformer stretches images to the model's size, no crop).
  All zero when the map is: nothing in the image speaks for the class.
"""

from __future__ import annotations

import base64
import io

import numpy as np

HOT = 0.5  # share of the peak that bounds the hottest region
OPACITY = 0.6  # the colour's weight where the map is 1


def _colours(heat: np.ndarray) -> np.ndarray:
    """``[H, W]`` in [0, 1] → ``[H, W, 3]`` in [0, 1]: blue, cyan, yellow, red."""
    four = 4.0 * heat[..., None]
    return np.clip(1.5 - np.abs(four - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)


def overlay_png(gray: np.ndarray, heat: np.ndarray) -> bytes:
    """PNG of ``gray`` ``[H, W]`` in [0, 1] with ``heat`` ``[H, W]`` in [0, 1] over it."""
    from PIL import Image

    alpha = OPACITY * heat[..., None]
    rgb = (1.0 - alpha) * gray[..., None] + alpha * _colours(heat)
    buffer = io.BytesIO()
    Image.fromarray(np.round(rgb * 255).astype(np.uint8), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def hot_region(heat: np.ndarray) -> np.ndarray:
    """``[4]``: the box of the map's values at or above ``HOT`` × its peak, as fractions of width, height."""
    peak = float(heat.max())
    if peak <= 0:
        return np.zeros(4, dtype=np.float32)
    rows, cols = np.nonzero(heat >= HOT * peak)
    height, width = heat.shape
    return np.array([cols.min() / width, rows.min() / height, (cols.max() + 1) / width, (rows.max() + 1) / height],
                    dtype=np.float32)


def grayscale(rows: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The model's input ``[N, C, H, W]`` (uint8 pixels, or normalised float) as ``[N, H, W]`` in [0, 1]."""
    x = rows.astype(np.float32) / 255.0 if rows.dtype == np.uint8 else rows * std + mean
    return np.clip(x.mean(axis=1), 0.0, 1.0)


def outputs(rows: np.ndarray, cam: np.ndarray, mean: np.ndarray, std: np.ndarray, text: bool,
            png: bool = True) -> dict:
    """``hot_region``, and ``heatmap`` when ``png``; PNGs as base64 text when ``text`` (a JSON answer)."""
    made = {"hot_region": np.stack([hot_region(h) for h in cam])}
    if png:
        pngs = [overlay_png(g, h) for g, h in zip(grayscale(rows, mean, std), cam, strict=True)]
        made["heatmap"] = np.array([base64.b64encode(p).decode("ascii") for p in pngs] if text else pngs,
                                   dtype=object)
    return made
