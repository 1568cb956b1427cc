"""The drift sidecar started as the drift kustomize component starts it, with the champion found in an
``s3://`` bundle store, under the drift environment's interpreter, against a real S3-compatible server:
the drift image must hold the S3 client the bundle contract uses (``minio``), beside alibi-detect 0.11.4."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml
from support import sample_bundles
from support.processes import start_process, stop_process, wait_http

from bundle import champion, open_bundle, storage
from components.heart_disease.schema import serving_schema
from pipelines import manifests
from pipelines.local_stack import DRIFT_RUNTIME, REPO_ROOT, drift_python, free_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
WORKLOAD = "heart-disease"


def drift_container_args(overlay: str = "staging") -> list[str]:
    """The drift sidecar's arguments in the rendered overlay's predictor pod."""
    with manifests.render_tree() as tree:
        objects = [o for o in yaml.safe_load_all(manifests.render(tree / "kustomize" / "overlays" / overlay)) if o]
    isvc = next(o for o in objects if o["kind"] == "InferenceService" and o["metadata"]["name"] == WORKLOAD)
    (drift,) = [c for c in isvc["spec"]["predictor"]["containers"] if c["name"] == "drift"]
    return drift["args"]


def require_drift_env() -> str:
    python = drift_python()
    if not Path(python).exists():
        pytest.fail(f"no drift environment at {python}: `make venv` builds it")
    return python


def test_the_drift_environment_holds_the_s3_client_of_the_bundle_contract():
    code = ("import json, minio, numpy, pydantic, alibi_detect\n"
            "from bundle import storage\n"
            "client = storage.S3Config(endpoint='http://127.0.0.1:9').client()\n"
            "print(json.dumps({'client': type(client).__module__ + '.' + type(client).__name__,\n"
            "                  'minio': minio.__file__, 'numpy': numpy.__version__,\n"
            "                  'pydantic': pydantic.VERSION, 'alibi_detect': alibi_detect.__version__}))")
    done = subprocess.run([require_drift_env(), "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                          env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "TRANSFORMERS_VERBOSITY": "error"},
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["client"] == "minio.api.Minio"
    assert Path(found["minio"]).is_relative_to(Path(drift_python()).parents[1])  # the drift env's, not another's
    assert (found["alibi_detect"], found["numpy"], found["pydantic"][:2]) == ("0.11.4", "1.24.4", "1.")


def test_the_sidecar_loads_the_champion_from_an_s3_store(s3_server, tmp_path):
    args = drift_container_args()
    store = next(a.split("=", 1)[1] for a in args if a.startswith("--bundle_store="))
    assert storage.is_s3(store)
    # the champion as a pipeline's export leaves it: the bundle folder and the pointer beside it
    s3 = storage.S3Config.from_environ(os.environ)
    folder = sample_bundles.write_heart_disease(tmp_path / "bundle", serving_schema(), window=20)
    manifest = open_bundle(folder).manifest
    uri = storage.upload_dir(folder, champion.bundle_uri(store, WORKLOAD, manifest.model_version), s3)
    champion.write(store, champion.ChampionPointer(WORKLOAD, manifest.model_name, manifest.model_version, uri), s3)

    port = free_ports(1)[0]
    # the pod's arguments, then this machine's port, address and log folder (the last of a flag wins)
    argv = [require_drift_env(), "-m", DRIFT_RUNTIME, *args, f"--port={port}", "--host=127.0.0.1",
            f"--log_dir={tmp_path / 'log'}"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TRANSFORMERS_VERBOSITY": "error", "HOME": str(tmp_path)}
    proc = start_process(argv, tmp_path / "sidecar.log", env=env, cwd=REPO_ROOT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=90, proc=proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/drift", timeout=10) as response:
            status = json.loads(response.read())
    finally:
        stop_process(proc)
    assert (status["model_name"], status["model_version"]) == (manifest.model_name, manifest.model_version)
    assert status["workload"] == WORKLOAD
