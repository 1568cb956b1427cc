"""The deploy step's local path for real: a running `clinops serve` (predictor, transformer and drift
sidecar processes) restarts on the new champion when the step signals it, and a step with no serve running
says so instead of failing."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from support import sample_bundles

from bundle import champion
from components.deploy import local
from components.deploy.step import DeployRequest, run_deploy
from components.heart_disease.schema import serving_schema
from pipelines.local_stack import free_ports

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def serving_pids(bundle: str) -> set[int]:
    """Processes whose command line serves ``bundle`` (predictor, transformer, drift sidecar)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if bundle.encode() in argv:
                found.add(int(proc.name))
    return found


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/heart-disease/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_the_step_restarts_clinops_serve_on_the_new_champion(tmp_path):
    home = tmp_path / "home"
    store = home / "bundles"
    schema = serving_schema()
    first = str(sample_bundles.write_heart_disease(store / "heart-disease" / "1", schema))
    second = str(sample_bundles.write_heart_disease(store / "heart-disease" / "2", schema, seed=1))
    champion.write(str(store), champion.ChampionPointer("heart-disease", "heart-disease", "1", first))
    ports = free_ports(5)
    env = {**os.environ, "CLINOPS_HOME": str(home), "CLINOPS_BUNDLE_STORE": str(store),
           "CLINOPS_SERVE_HEART_DISEASE_PORTS": ",".join(map(str, ports)),
           "CLINOPS_SERVE_PREDICTOR_PROTOCOL": "v2"}
    serve = subprocess.Popen([sys.executable, "-m", "pipelines.local_stack", "--workload", "heart-disease"],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        state = wait_for(lambda: (s := local.ServeState.read(home)) and s.status == local.SERVING and s,
                         120, "clinops serve to start")
        assert state.pid == serve.pid and state.generation == 0 and state.bundles == {"heart-disease": first}
        assert ready(ports[0])
        old = serving_pids(first)
        assert len(old) == 3

        # what the pipeline's export and gate leave behind: a new champion pointer
        champion.write(str(store), champion.ChampionPointer("heart-disease", "heart-disease", "2", second))
        recorded = []
        started = time.monotonic()
        outcome = run_deploy(DeployRequest("heart-disease", mode="local"),
                             {"model_name": "heart-disease", "model_version": "2", "promoted": True,
                              "bundle_uri": second}, home=home, record=lambda *a: recorded.append(a))
        took = time.monotonic() - started
        assert outcome["action"] == "restarted", outcome
        assert outcome["target"] == "local" and f"restarted on {second}" in outcome["reasons"][0]
        state = local.ServeState.read(home)
        assert state.pid == serve.pid and state.generation == 1 and state.bundles == {"heart-disease": second}
        assert ready(ports[0])
        assert not any(local.alive(pid) for pid in old)  # the old processes are gone
        assert len(serving_pids(second)) == 3
        (_, version, tags), = recorded
        assert version == "2" and tags["deploy"] == "restarted" and tags["deploy_target"] == "local"
        print(f"local restart took {took:.1f} s")
    finally:
        serve.send_signal(signal.SIGTERM)
        output = serve.communicate(timeout=60)[0]
    assert serve.returncode == 0, output
    assert local.ServeState.read(home) is None  # a clean stop leaves no state behind
    skipped = local.restart(home, "heart-disease", second)
    assert skipped.action == local.SKIPPED and "no clinops serve is running" in skipped.reasons[0]
    json.dumps(skipped.record())
