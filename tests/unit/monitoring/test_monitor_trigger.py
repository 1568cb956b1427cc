"""The retrain decision and the action it gates: the action runs only when drift was found and the run
allows it; locally it is the `clinops pipeline` command line, in a cluster a KFP run."""

import json
import sys

import pytest

from components.monitoring import trigger

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("drift, allowed, retrain, reason", [
    (False, False, False, "no drift found"), (False, True, False, "no drift found"),
    (True, False, False, "retraining not allowed"), (True, True, True, "retraining allowed")])
def test_retraining_needs_drift_and_permission(drift, allowed, retrain, reason):
    decision = trigger.decide(drift, allowed)
    assert decision.retrain is retrain and reason in decision.reason


def test_the_action_runs_only_on_a_decision_to_retrain():
    calls = []

    def start():
        calls.append(1)
        return "started"

    assert trigger.act(trigger.decide(True, False), start) == (
        "retraining not started: drift found; retraining not allowed by this run (retrain_on_drift is off)")
    assert calls == []
    assert trigger.act(trigger.decide(True, True), start) == "started" and calls == [1]


def test_the_local_command_is_the_clinops_pipeline_runner():
    assert trigger.local_command("pneumonia") == [sys.executable, "-m", "pipelines.cli", "pipeline", "pneumonia",
                                                  "--profile", "quick"]
    assert trigger.local_command("heart-disease", "full", "clinops --verbose") == [
        "clinops", "--verbose", "pipeline", "heart-disease", "--profile", "full"]


def recorder(tmp_path, code=0):
    out = tmp_path / "argv.json"
    script = tmp_path / "record.py"
    script.write_text(f"import json, sys\nopen({str(out)!r}, 'w').write(json.dumps(sys.argv[1:]))\nsys.exit({code})\n")
    return f"{sys.executable} {script}", out


def test_a_local_start_runs_the_command_and_a_failure_names_it(tmp_path):
    launcher, out = recorder(tmp_path)
    assert "local run of the heart-disease pipeline" in trigger.start_training("heart-disease", launcher=launcher)
    assert json.loads(out.read_text()) == ["pipeline", "heart-disease", "--profile", "quick"]
    failing, _ = recorder(tmp_path, code=3)
    with pytest.raises(RuntimeError, match=r"retraining pneumonia failed: `.*record.py pipeline pneumonia "
                                           r"--profile quick` exited with 3"):
        trigger.start_training("pneumonia", launcher=failing)


def test_a_kfp_endpoint_sends_the_run_to_the_cluster(monkeypatch, tmp_path):
    sent = []
    monkeypatch.setattr(trigger, "submit_to_kfp", lambda *args: sent.append(args) or "kfp run 42")
    assert trigger.start_training("pneumonia", "http://ml-pipeline.kubeflow:8888", "team-a") == "kfp run 42"
    assert sent == [("pneumonia", "http://ml-pipeline.kubeflow:8888", "team-a")]


def test_a_kfp_run_is_made_from_the_compiled_training_pipeline(monkeypatch, tmp_path):
    import kfp

    made = {}

    class Client:
        def __init__(self, host, namespace):
            made["client"] = (host, namespace)

        def create_run_from_pipeline_package(self, path, **kwargs):
            made["run"] = (path, kwargs)
            return type("Run", (), {"run_id": "r-1"})()

    monkeypatch.setattr(kfp, "Client", Client)
    outcome = trigger.submit_to_kfp("heart-disease", "http://ml-pipeline.kubeflow:8888")
    assert outcome == "retraining started: KFP run r-1 of heart-disease.yaml on http://ml-pipeline.kubeflow:8888"
    assert made["client"] == ("http://ml-pipeline.kubeflow:8888", "kubeflow")
    assert made["run"] == (str(trigger.COMPILED_DIR / "heart-disease.yaml"),
                           {"arguments": {}, "run_name": "heart-disease-retrain", "experiment_name": "heart-disease",
                            "namespace": None})
    with pytest.raises(FileNotFoundError, match="no compiled pipeline for pneumonia .* run `make compile`"):
        trigger.submit_to_kfp("pneumonia", "http://localhost:1", package=tmp_path / "missing.yaml")
