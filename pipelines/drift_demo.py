"""The drift part of ``make run``: through each running workload's transformer, windows of traffic like the
training data, then windows of shifted traffic, and the drift sidecar's verdicts on each.

- heart-disease: in-distribution = UCI patients of every site, as the champion was trained; shifted =
  VA Long Beach patients only (older, mostly diseased, cholesterol often unrecorded).
- pneumonia: clean phantom X-rays like those the champion was trained on; shifted = the same phantoms
  taken with another acquisition (low contrast and sensor noise).

One request per window, of exactly the window's size, so that every window holds one phase only.
"""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.request

import numpy as np

from bundle.schema import ImageSchema
from components.pneumonia.phantom import render

SHIFT_SITE = "VA Long Beach"
WINDOWS_PER_PHASE = 2
FILLER = "(completes the window left open)"


def heart_phases(size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Rows (13 features, UCI codes, NaN = missing) for the in-distribution and the shifted phase."""
    from components.heart_disease.data import ingest, to_coded
    from components.heart_disease.schema import FEATURES, RANGES, SITE

    coded, _, _ = to_coded(ingest())
    for name, (low, high) in RANGES.items():  # impossible values (cholesterol 0) are what a client sends as missing
        coded.loc[(coded[name] < low) | (coded[name] > high), name] = np.nan
    coded = coded.dropna(subset=["age", "sex", "cp"])
    rng = np.random.default_rng(seed)
    n = size * WINDOWS_PER_PHASE
    every_site = coded[FEATURES].to_numpy(float)
    shifted = coded.loc[coded[SITE] == SHIFT_SITE, FEATURES].to_numpy(float)
    return {"in-distribution": every_site[rng.choice(len(every_site), n, replace=False)],
            f"shifted ({SHIFT_SITE} only)": shifted[rng.choice(len(shifted), n, replace=len(shifted) < n)]}


def heart_body(rows: np.ndarray, names: list[str]) -> dict:
    return {"inputs": [{"name": name, "shape": [len(rows)], "datatype": "FP64",
                        "data": [None if np.isnan(v) else float(v) for v in rows[:, j]]}
                       for j, name in enumerate(names)]}


def phantom_files(schema: ImageSchema, n: int, shifted: bool, seed: int) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    size = max(schema.image.height, 96)
    files = []
    for i in range(n):
        pixels = render(rng, size, size, pneumonia=bool(i % 2))
        if shifted:  # another scanner: flat contrast, sensor noise
            pixels = np.clip(0.35 + 0.4 * (pixels - 0.35) + rng.normal(0, 0.08, pixels.shape), 0, 1)
        buffer = io.BytesIO()
        Image.fromarray((pixels * 255).astype(np.uint8)).convert(
            "L" if schema.image.channels == 1 else "RGB").save(buffer, "PNG")
        files.append(buffer.getvalue())
    return files


def image_body(files: list[bytes]) -> dict:
    return {"inputs": [{"name": "image", "shape": [len(files)], "datatype": "BYTES",
                        "data": [base64.b64encode(f).decode() for f in files]}]}


def drift_status(endpoint) -> dict:
    with urllib.request.urlopen(f"{endpoint.drift_url}/v1/drift?limit=200", timeout=10) as response:
        return json.loads(response.read())


def _post(url: str, body: dict) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return response.status


def run_phases(endpoint, phases: dict[str, list[dict]], timeout_s: float = 120.0) -> list[dict]:
    """Send each phase's requests (one per window), wait for the sidecar's verdicts, and return one row per
    window: phase, rows, drift, the smallest p-values."""
    before = drift_status(endpoint)["windows_tested"]
    order = []
    for phase, bodies in phases.items():
        for body in bodies:
            _post(endpoint.infer_url, body)
            order.append(phase)
    deadline = time.monotonic() + timeout_s
    while True:
        status = drift_status(endpoint)
        if status["windows_tested"] >= before + len(order) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    verdicts = status["verdicts"][-(status["windows_tested"] - before):] if status["windows_tested"] > before else []
    rows = []
    for phase, verdict in zip(order, verdicts, strict=False):
        lowest = sorted(verdict["features"], key=lambda t: t["p_val"])[:2]
        rows.append({"phase": phase, "rows": verdict["window"]["rows"], "is_drift": verdict["is_drift"],
                     "lowest_p": {t["name"]: t["p_val"] for t in lowest},
                     "score_p": verdict["score"]["p_val"] if verdict.get("score") else None})
    return rows


def print_table(workload: str, rows: list[dict], expected: int) -> None:
    print(f"\n[{workload}] drift sidecar verdicts ({len(rows)} of {expected} windows):")
    for r in rows:
        lowest = ", ".join(f"{k} p={v:.2g}" for k, v in r["lowest_p"].items())
        score = f"; P(disease) p={r['score_p']:.2g}" if r["score_p"] is not None else ""
        print(f"  {r['phase']:<32} {r['rows']:>4} rows  {'DRIFT' if r['is_drift'] else 'no drift':<9} "
              f"lowest: {lowest}{score}")


def run(endpoint, workload: str, schema, window: int) -> dict:
    """One workload's drift demo; the summary says whether shifted windows were flagged and clean ones not."""
    if workload == "heart-disease":
        phases = {phase: [heart_body(rows[i:i + window], list(schema.feature_order))
                          for i in range(0, len(rows), window)]
                  for phase, rows in heart_phases(window).items()}
    else:
        phases = {"in-distribution": [image_body(phantom_files(schema, window, False, s)) for s in (1, 2)],
                  "shifted (low contrast + noise)": [image_body(phantom_files(schema, window, True, s))
                                                     for s in (3, 4)]}
    expected = sum(len(b) for b in phases.values())
    open_rows = drift_status(endpoint)["window"]["rows"]  # the examples sent before, or earlier traffic
    if open_rows:  # complete that window with clean traffic, so that each phase's window is its own
        filler = (heart_body(heart_phases(window, seed=1)["in-distribution"][:window - open_rows],
                             list(schema.feature_order)) if workload == "heart-disease"
                  else image_body(phantom_files(schema, window - open_rows, False, 9)))
        phases = {FILLER: [filler], **phases}
    rows = [r for r in run_phases(endpoint, phases) if r["phase"] != FILLER]
    print_table(workload, rows, expected)
    clean = [r["is_drift"] for r in rows if r["phase"] == "in-distribution"]
    shifted = [r["is_drift"] for r in rows if r["phase"] != "in-distribution"]
    return {"windows": rows, "complete": len(rows) == expected,
            "flagged_shifted": sum(shifted), "flagged_clean": sum(clean)}
