"""Explanation latency for ``make bench-serve`` (comparison 4): one heart-disease row and one X-ray, each
sent one request at a time to a real local stack, as a plain infer and with its explanation asked for
(heart-disease: the ``explanation`` output; pneumonia: ``heatmap`` and ``hot_region``), alternating, so
that the two see the same machine. Reports p50 / p99 of each and the explanation's extra p50.

Settings: ``BENCH_EXPLAIN_REQUESTS`` (default 200 heart-disease requests of each kind; a tenth of that
for the X-ray).
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
import urllib.request
from pathlib import Path

import numpy as np

REQUESTS = int(os.environ.get("BENCH_EXPLAIN_REQUESTS", "200"))


def _post(url: str, body: bytes) -> float:
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}")
    return time.perf_counter() - start


def _xray(height: int, width: int) -> str:
    from PIL import Image

    from components.pneumonia import phantom

    pixels = (phantom.render(np.random.default_rng(0), height, width, True) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _pair(url: str, inputs: list, explain: list[str], n: int) -> dict:
    plain = json.dumps({"inputs": inputs}).encode()
    asked = json.dumps({"inputs": inputs, "outputs": [{"name": name} for name in explain]}).encode()
    for body in (plain, asked):  # warm-up: the first explanation builds its batcher's thread
        _post(url, body)
    times: dict[str, list[float]] = {"infer": [], "explain": []}
    for _ in range(n):
        times["infer"].append(_post(url, plain))
        times["explain"].append(_post(url, asked))
    out = {kind: {"p50_ms": float(np.percentile(t, 50) * 1000), "p99_ms": float(np.percentile(t, 99) * 1000),
                  "requests": len(t)} for kind, t in times.items()}
    out["extra_p50_ms"] = out["explain"]["p50_ms"] - out["infer"]["p50_ms"]
    return out


def bench_explain(heart: Path, pneumonia: Path | None, logs: Path, row: list[float], features: list[str]) -> dict:
    from pipelines.local_stack import LocalStack

    bundles = {"heart-disease": str(heart)} | ({"pneumonia": str(pneumonia)} if pneumonia else {})
    with LocalStack(bundles, ports="ephemeral", log_dir=logs / "explain", drift_dir=logs / "explain-drift",
                    ready_timeout_s=300) as stack:
        results = {}
        heart_inputs = [{"name": n, "shape": [1], "datatype": "FP64", "data": [v]}
                        for n, v in zip(features, row, strict=True)]
        results["heart-disease"] = _pair(f"{stack.endpoints['heart-disease'].rest_url}/v2/models/heart-disease/infer",
                                         heart_inputs, ["probability", "explanation"], REQUESTS)
        if pneumonia:
            from bundle import open_bundle

            image = open_bundle(pneumonia, "pneumonia").schema.image
            xray = [{"name": "image", "shape": [1], "datatype": "BYTES",
                     "data": [_xray(max(image.height, 256), max(image.width, 256))]}]
            results["pneumonia"] = _pair(f"{stack.endpoints['pneumonia'].rest_url}/v2/models/pneumonia/infer", xray,
                                         ["probability", "heatmap", "hot_region"], max(10, REQUESTS // 10))
    return results


def report(results: dict) -> None:
    print("\nexplanations, one request at a time (p50 / p99 ms)")
    for workload, r in results.items():
        print(f"  {workload:<14} infer {r['infer']['p50_ms']:8.2f} / {r['infer']['p99_ms']:8.2f} · explain "
              f"{r['explain']['p50_ms']:8.2f} / {r['explain']['p99_ms']:8.2f} · extra p50 {r['extra_p50_ms']:.2f}")
