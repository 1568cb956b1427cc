"""Image files for tests: real PNG/JPEG encodings, and a PNG header that claims a huge size."""

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def random_image(height: int, width: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return (rng.random(shape) * 255).astype(np.uint8)


def png_bomb_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose header claims ``width x height`` pixels (no pixel data follows)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def reference_tensor(data: bytes, height: int, width: int, channels: int, mean, std) -> np.ndarray:
    """The preprocessing contract, written out independently of the transformer."""
    image = Image.open(io.BytesIO(data)).convert("L" if channels == 1 else "RGB")
    image = image.resize((width, height), Image.BILINEAR)
    x = np.asarray(image, dtype=np.float32) / 255.0
    x = x[None] if channels == 1 else x.transpose(2, 0, 1)
    return (x - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
