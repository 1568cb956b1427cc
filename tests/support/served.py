"""Train-then-serve checks: the real serving runtimes (predictor + transformer processes, as in a cluster)
serve the bundle a pipeline run exported, and the V2 answers for the run's own test split equal what the
registered MLflow model computes, to float32 precision. No synthetic sample bundle is involved.

The pipeline tests call these on their first run's record, so that each workload trains once for both."""

from __future__ import annotations

import base64
import io
import json
import tempfile
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from bundle import open_bundle
from components.common.settings import get_settings
from components.heart_disease.schema import FEATURES
from pipelines.local_stack import LocalStack


def _artifact(home: Path, workload: str, task: str, output: str) -> Path:
    """The output of one task of the last local run (kfp.local's ``<root>/<run>/<task>/<output>``)."""
    found = sorted((home / "pipelines" / workload / "root").glob(f"*/{task}/{output}"),
                   key=lambda p: p.stat().st_mtime)
    assert found, f"no {task}/{output} under the {workload} pipeline root"
    return found[-1]


def _infer(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200
        answer = json.loads(response.read())
    return {out["name"]: out["data"] for out in answer["outputs"]}


def _registered(model: str, version: str, flavour):
    mlflow.set_tracking_uri(get_settings().tracking_uri)
    with tempfile.TemporaryDirectory() as download:
        return flavour.load_model(f"models:/{model}/{version}", dst_path=download)


def assert_heart_disease_serves_what_was_registered(home: Path, record: dict) -> None:
    """Call right after the run: its test split is read from the last run's artifacts."""
    served = open_bundle(Path(record["bundle_uri"]), "heart-disease")
    assert served.manifest.model_version == record["model_version"]

    test = pd.read_csv(_artifact(home, "heart-disease", "split", "test"))
    rows = test[FEATURES].to_numpy(dtype=float)
    expected = _registered("heart-disease", record["model_version"], mlflow.sklearn).predict_proba(rows)[:, 1]
    if served.calibration is not None:  # the served probability is the recalibrated one
        expected = np.array([served.calibration.apply_one(float(v)) for v in expected])

    # one input per feature, as a client sends them; null where the record has no value
    inputs = [{"name": name, "datatype": "FP64", "shape": [len(rows)],
               "data": [None if np.isnan(v) else float(v) for v in rows[:, i]]} for i, name in enumerate(FEATURES)]
    with LocalStack({"heart-disease": record["bundle_uri"]}, ports="ephemeral", log_dir=home / "e2e-logs") as stack:
        out = _infer(stack.endpoints["heart-disease"].infer_url, {"inputs": inputs})
    probability = np.asarray(out["probability"], dtype=np.float64)
    assert len(probability) == len(rows) > 100
    np.testing.assert_allclose(probability, expected.astype(np.float32), rtol=1e-6, atol=1e-7)
    assert out["prediction"] == [int(p >= served.schema.threshold) for p in np.float32(expected)]


def assert_pneumonia_serves_what_was_registered(home: Path, record: dict) -> None:
    """Call right after the run: its test split is read from the last run's artifacts."""
    import mlflow.pytorch
    import torch
    from PIL import Image

    from components.pneumonia import preprocess, split

    served = open_bundle(Path(record["bundle_uri"]), "pneumonia")
    splits = _artifact(home, "pneumonia", "split", "splits")
    contract = split.load_contract(splits)
    images = split.load(splits, "test").x  # uint8 [N, H, W, C] at the bundle's size
    assert images.shape[1:3] == (served.schema.image.height, served.schema.image.width)
    net = _registered("pneumonia", record["model_version"], mlflow.pytorch).eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(preprocess.normalise(images, contract)))
        logits = logits[0] if isinstance(logits, tuple) else logits
        expected = torch.softmax(logits.float(), 1)[:, 1].numpy()
    # TorchScript in the predictor vs the registered eager module, batches of other sizes: float32 rounding of
    # about 1e-5 in the raw probability; the served one is recalibrated, and where the calibration map is
    # steep it carries that rounding further, by as much as the map moves over ±1e-5 around the raw value
    rounding = 1e-5
    tolerance = np.full(len(expected), rounding)
    if served.calibration is not None:
        calibrate = served.calibration.apply_one
        tolerance += [max(abs(calibrate(float(v) + rounding) - calibrate(float(v))),
                          abs(calibrate(float(v) - rounding) - calibrate(float(v)))) for v in expected]
        expected = np.array([calibrate(float(v)) for v in expected])

    def png(pixels: np.ndarray) -> str:  # at the bundle's size: the transformer's resize leaves it as is
        buffer = io.BytesIO()
        Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(buffer, "PNG")
        return base64.b64encode(buffer.getvalue()).decode()

    probability = []
    with LocalStack({"pneumonia": record["bundle_uri"]}, ports="ephemeral", log_dir=home / "e2e-logs",
                    extra_args={"pneumonia/predictor": ["--device", "cpu"]}) as stack:  # CPU fp32, as compared
        for start in range(0, len(images), 32):
            chunk = [png(x) for x in images[start:start + 32]]
            out = _infer(stack.endpoints["pneumonia"].infer_url,
                         {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(chunk)], "data": chunk}]})
            probability += out["probability"]
    assert len(probability) == len(images) >= 64
    off = np.abs(np.asarray(probability) - expected)
    assert (off <= tolerance).all(), [(i, probability[i], expected[i], tolerance[i]) for i in np.flatnonzero(off > tolerance)]
