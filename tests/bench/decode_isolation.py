"""How much one client sending the most expensive valid images slows another client (not a test).

Starts a pneumonia stack (the sample bundle, 32×28 grey) on loopback; a heavy client sends, back to back,
one grey JPEG of ``BENCH_HEAVY_SIDE``² pixels per request (default 7000: 49 M pixels, under the 50 M
per-image limit of an exported bundle, which the run sets as the sample bundle's, and the 64 Mi decode
budget), while a light client sends a small image every 20 ms.
Prints the light client's p50/p99/max alone and beside the heavy one, and the heavy requests' latency.
``BENCH_SECONDS`` (default 20) per phase.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support import sample_bundles  # noqa: E402

from pipelines.local_stack import LocalStack  # noqa: E402


def _jpeg(side: int, seed: int) -> bytes:
    # a gradient with mild noise: every pixel still decoded, the file under the 16 MiB per-image limit
    noise = np.random.default_rng(seed).normal(0, 6, (side, side))
    pixels = np.clip(np.add.outer(np.arange(side), np.arange(side)) * (200 / (2 * side)) + 28 + noise, 0, 255)
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "L").save(out, "JPEG", quality=75)
    return out.getvalue()


def _body(jpeg: bytes) -> bytes:
    return json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                   "data": [base64.b64encode(jpeg).decode()]}]}).encode()


def _post(url: str, body: bytes) -> float:
    start = time.perf_counter()
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()
        assert response.status == 200
    return time.perf_counter() - start


def _light(url: str, body: bytes, seconds: float) -> list[float]:
    took, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        took.append(_post(url, body))
        time.sleep(0.02)
    return took


def _summary(took: list[float]) -> str:
    ms = np.array(took) * 1000
    return f"n={len(ms)} p50={np.percentile(ms, 50):.1f} ms p99={np.percentile(ms, 99):.1f} ms max={ms.max():.1f} ms"


def main() -> None:
    seconds = float(os.environ.get("BENCH_SECONDS", "20"))
    side = int(os.environ.get("BENCH_HEAVY_SIDE", "7000"))
    root = Path(tempfile.mkdtemp(prefix="decode-isolation-"))
    bundle = sample_bundles.write_pneumonia(root / "pneumonia", height=32, width=28, channels=1)
    heavy_body, light_body = _body(_jpeg(side, 1)), _body(_jpeg(64, 2))
    with LocalStack({"pneumonia": str(bundle)}, ports="ephemeral", log_dir=root / "logs", drift=False,
                    extra_args={"pneumonia/transformer": ["--max_body_bytes", str(len(heavy_body) + 4096),
                                                           "--max_pixels", str(side * side)]},
                    ready_timeout_s=120) as stack:
        url = stack.endpoints["pneumonia"].infer_url
        _light(url, light_body, 2.0)  # warm up
        alone = _light(url, light_body, seconds)
        heavy: list[float] = []
        running = threading.Event()
        running.set()

        def flood():
            while running.is_set():
                heavy.append(_post(url, heavy_body))

        thread = threading.Thread(target=flood)
        thread.start()
        try:
            beside = _light(url, light_body, seconds)
        finally:
            running.clear()
            thread.join()
    print(f"heavy request: {side}x{side} grey JPEG, {len(heavy_body) / 1e6:.1f} MB body")
    print(f"light client alone:        {_summary(alone)}")
    print(f"light client beside heavy: {_summary(beside)}")
    print(f"heavy client:              {_summary(heavy)}")


if __name__ == "__main__":
    main()
