"""The KFP component's body through ``.python_func``: the outcome lands as tags on the real (SQLite) MLflow
registry, a failed local restart fails the step, and bad parameters are refused by name."""

import json
import subprocess
import sys

import mlflow
import pytest

from components.common import registry
from components.deploy import local
from components.deploy.component import deploy

pytestmark = pytest.mark.unit


@pytest.fixture
def version(clinops_home):
    registry.connect()
    client = mlflow.MlflowClient()
    client.create_registered_model("heart-disease")
    return client.create_model_version("heart-disease", source=str(clinops_home), run_id=None).version


def call(export: dict, mode="local", limits=""):
    return deploy.python_func(workload="heart-disease", export_json=json.dumps(export), mode=mode, namespace="",
                              canary_percent=10, period_s=60.0, prometheus_url="http://prometheus:9090",
                              limits=limits)


def test_the_outcome_is_tagged_on_the_version(version, clinops_home):
    export = {"model_name": "heart-disease", "model_version": version, "promoted": True, "bundle_uri": "/b/1"}
    outcome = json.loads(call(export))
    assert outcome["action"] == "skipped" and "no clinops serve is running" in outcome["reasons"][0]
    tags = mlflow.MlflowClient().get_model_version("heart-disease", version).tags
    assert tags["deploy"] == "skipped" and tags["deploy_target"] == "local" and tags["deploy_bundle"] == "/b/1"


def test_a_failed_restart_fails_the_step(version, clinops_home, monkeypatch):
    # a live process that is not clinops serve: it ignores the signal and never shows a new generation
    sleeper = subprocess.Popen([sys.executable, "-c", "import signal, sys, time; "
                                "signal.signal(signal.SIGHUP, signal.SIG_IGN); print('ready', flush=True); "
                                "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert sleeper.stdout.readline().strip() == "ready"  # its handler is set
        local.ServeState(sleeper.pid, local.SERVING).write(clinops_home)
        original = local.restart
        monkeypatch.setattr(local, "restart", lambda *a, **k: original(*a[:3], timeout_s=1.0, poll_s=0.1))
        export = {"model_name": "heart-disease", "model_version": version, "promoted": True, "bundle_uri": "/b/2"}
        with pytest.raises(RuntimeError, match="deploy failed: clinops serve did not come back within 1 s"):
            call(export)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert mlflow.MlflowClient().get_model_version("heart-disease", version).tags["deploy"] == "failed"


def test_bad_parameters_are_refused_by_name():
    export = {"model_name": "m", "model_version": "1", "promoted": True, "bundle_uri": "/b/1"}
    with pytest.raises(ValueError, match="deploy mode 'k8s'"):
        call(export, mode="k8s")
    with pytest.raises(ValueError, match="canary limit 'p99'"):
        call(export, limits="p99=1")
