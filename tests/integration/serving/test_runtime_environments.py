"""The serving images' own requirement sets are enough to serve: the sklearn predictor and the
transformer run from fresh virtual environments that hold only requirements/serving-sklearn.txt and
requirements/serving-transformer.txt (what inference/Dockerfile installs; no Docker engine here, so a
venv stands in for each image) and answer with the model's own probabilities, over gRPC between them.
The torch image's set is covered by the import check in tests/unit/inference/test_runtime_images.py
(a venv with torch is gigabytes)."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import joblib
import numpy as np
import pytest
from support import sample_bundles

from pipelines.local_stack import free_ports, http_ok

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[3]


def runtime_pythons(root: Path, *requirements: str) -> list[Path]:
    """The interpreters of fresh venvs holding one requirement file each (versions from constraints.txt);
    the venvs are made and filled side by side (pip waits on the index and the disk as much as on a core)."""
    venvs = [root / r.removesuffix(".txt") for r in requirements]
    for venv in venvs:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installs = [subprocess.Popen([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c",
                                  str(ROOT / "requirements" / "constraints.txt"), "-r", str(ROOT / "requirements" / r)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                for venv, r in zip(venvs, requirements, strict=True)]
    for install, r in zip(installs, requirements, strict=True):
        output, _ = install.communicate(timeout=800)
        assert install.returncode == 0, f"pip install -r {r}:\n{output.decode()[-3000:]}"
    return [venv / "bin" / "python" for venv in venvs]


def start(python: Path, argv: list[str], ready_url: str, log: Path) -> subprocess.Popen:
    # the project's source on the path (the image installs it as a wheel); no other package than the venv's
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "CLINOPS_HOME": str(log.parent / "home")}
    process = subprocess.Popen([str(python), "-m", *argv], stdout=log.open("wb"), stderr=subprocess.STDOUT,
                               env=env, cwd=log.parent)
    deadline = time.monotonic() + 120
    while not http_ok(ready_url):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{argv[0]} did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    return process


def test_sklearn_predictor_and_transformer_serve_from_their_images_requirements(tmp_path, bundles, heart_schema):
    predictor_python, transformer_python = runtime_pythons(tmp_path, "serving-sklearn.txt", "serving-transformer.txt")
    bundle = str(bundles["heart-disease"])
    p_http, p_grpc, t_http, t_grpc = free_ports(4)
    processes = []
    try:
        processes.append(start(predictor_python, ["inference.sklearn_predictor", "--model_dir", bundle,
                                                  "--model_name", "heart-disease", "--http_port", str(p_http),
                                                  "--grpc_port", str(p_grpc)],
                               f"http://127.0.0.1:{p_http}/v2/models/heart-disease/ready", tmp_path / "predictor.log"))
        processes.append(start(transformer_python, ["inference.transformer", "--workload", "heart-disease",
                                                    "--model_dir", bundle, "--predictor_host", f"127.0.0.1:{p_grpc}",
                                                    "--predictor_protocol", "grpc-v2", "--http_port", str(t_http),
                                                    "--grpc_port", str(t_grpc)],
                               f"http://127.0.0.1:{t_http}/v2/models/heart-disease/ready", tmp_path / "transformer.log"))
        rows = sample_bundles.heart_rows(heart_schema, 40, seed=3)
        rows = rows[~np.isnan(rows).any(axis=1)][:6]  # JSON has no NaN
        body = {"inputs": [{"name": "features", "shape": list(rows.shape), "datatype": "FP64",
                            "data": rows.ravel().tolist()}]}
        request = urllib.request.Request(f"http://127.0.0.1:{t_http}/v2/models/heart-disease/infer",
                                         data=json.dumps(body).encode(), headers={"content-type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(30)
    outputs = {o["name"]: o["data"] for o in answer["outputs"]}
    expected = joblib.load(Path(bundle) / "model.joblib").predict_proba(rows)[:, 1]
    np.testing.assert_allclose(outputs["probability"], expected, rtol=1e-6, atol=1e-7)
    assert outputs["prediction"] == (expected >= 0.5).astype(int).tolist()
    for python, absent in ((predictor_python, "torch"), (transformer_python, "sklearn")):
        probe = subprocess.run([str(python), "-c", f"import {absent}"], capture_output=True)
        assert probe.returncode != 0, f"{python} should not hold {absent}"
