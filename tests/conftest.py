"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
from support.homes import TEMP_EXEMPT, _point_mlflow_at, _short_link  # noqa: F401 - re-exported
from support.processes import free_port, start_process, stop_process, wait_http

from components.common.settings import reload_settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clinops_home(tmp_path, monkeypatch):
    """A private ``CLINOPS_HOME`` with embedded defaults (no tracking server, no S3)."""
    home = tmp_path / "clinops-home"
    monkeypatch.setenv("CLINOPS_HOME", str(home))
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "CLINOPS_MLFLOW_TRACKING_URI", "CLINOPS_BUNDLE_STORE", "CLINOPS_S3_ENDPOINT",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    _point_mlflow_at(reload_settings().tracking_uri, monkeypatch)
    yield home
    reload_settings()


@pytest.fixture
def temp_leftovers(tmp_path, monkeypatch):
    """Gives the code under test a private temporary folder and returns a call that names what is left
    in it: a training or registration run must clean up after itself (a left copy of a checkpoint or of
    a downloaded model is tens of MB per run). ``TMPDIR`` (so every child process started during the
    test) and ``tempfile.tempdir`` (this process) point at it, so nothing that others put in the
    machine's shared temporary folder meanwhile is counted.

    The folder lies in ``tmp_path`` (kept when the test fails) and is reached through a short link in
    the system temporary folder: AF_UNIX socket paths, which multiprocessing makes under TMPDIR (a
    pipeline task's scratch folder inside it, too), may not exceed 107 bytes. Ray keeps the system
    folder (``RAY_TMPDIR``) for the same reason."""
    system_tmp = tempfile.gettempdir()
    private = tmp_path / "tmp"
    private.mkdir()
    link = _short_link(private, Path(system_tmp))
    monkeypatch.setenv("RAY_TMPDIR", os.environ.get("RAY_TMPDIR", system_tmp))
    monkeypatch.setenv("TMPDIR", str(link))
    monkeypatch.setattr(tempfile, "tempdir", str(link))

    def leftovers() -> list[str]:
        return sorted(name for name in os.listdir(private) if not name.startswith(TEMP_EXEMPT))

    yield leftovers
    link.unlink()




@pytest.fixture
def s3_server(tmp_path, monkeypatch):
    """A real S3-compatible HTTP server (moto) on localhost; environment set for the minio client."""
    port = free_port()
    proc = start_process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                         tmp_path / "moto.log")
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_http(endpoint + "/moto-api/", proc=proc)
        monkeypatch.setenv("CLINOPS_S3_ENDPOINT", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "clinops-test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "clinops-test-secret")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        reload_settings()
        yield endpoint
    finally:
        stop_process(proc)
        reload_settings()


@pytest.fixture
def mlflow_server(tmp_path, monkeypatch):
    """A real ``mlflow server`` process on localhost (SQLite backend, proxied artifacts)."""
    port = free_port()
    root = tmp_path / "mlflow-server"
    root.mkdir()
    proc = start_process(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts")],
        tmp_path / "mlflow.log")
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_http(uri + "/health", timeout=120, proc=proc)
        _point_mlflow_at(uri, monkeypatch)
        reload_settings()
        yield uri
    finally:
        stop_process(proc)
        reload_settings()
