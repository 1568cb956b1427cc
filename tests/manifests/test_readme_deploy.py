"""README "Deploy to a cluster", step 6 (the first runs) submits into the namespace the staging overlay fills:
its snippet runs here against a recording stand-in for ``kfp.Client``, and what it asked for is checked
against the rendered overlay (namespace, the service account its Role is bound to) and the compiled pipelines
(every parameter it passes exists)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
import yaml
from support.manifests import find

from pipelines import manifests
from pipelines.compile import COMPILED_DIR

pytestmark = pytest.mark.unit
README = Path(manifests.REPO / "README.md")


def first_runs_snippet() -> tuple[dict[str, str], str]:
    """(environment, Python source) of step 6 of the deploy commands."""
    section = README.read_text().split("## Deploy to a cluster", 1)[1].split("\n## ", 1)[0]
    step = section.split("# 6.", 1)[1].split("\n# 7.", 1)[0]
    found = re.search(r"^((?:\w+=\S+ )*)\.venv/bin/python - <<'PY'\n(.*?)\nPY$", step, flags=re.MULTILINE | re.DOTALL)
    assert found, "step 6 has no `.venv/bin/python - <<'PY'` snippet"
    env = dict(pair.split("=", 1) for pair in found.group(1).split())
    return env, found.group(2)


class RecordingClient:
    """The calls of ``kfp.Client`` the snippet makes, recorded."""

    made: list[RecordingClient] = []

    def __init__(self, host=None, namespace=None, **_):
        self.host, self.namespace, self.calls = host, namespace, []
        RecordingClient.made.append(self)

    def create_experiment(self, name, description=None, namespace=None):
        self.calls.append(("experiment", name, namespace))
        return types.SimpleNamespace(experiment_id=f"exp-{name}")

    def get_pipeline_id(self, name):
        return f"pipeline-{name}"

    def run_pipeline(self, experiment_id, job_name, pipeline_package_path=None, params=None, pipeline_id=None,
                     version_id=None, pipeline_root=None, enable_caching=None, cache_key=None, service_account=None):
        self.calls.append(("run", pipeline_id, dict(params or {}), service_account, experiment_id))
        return types.SimpleNamespace(run_id=f"run-{pipeline_id}")

    def wait_for_run_completion(self, run_id, timeout=None, **_):
        return types.SimpleNamespace(state="SUCCEEDED")


def pipeline_parameters(name: str) -> set[str]:
    spec = next(yaml.safe_load_all((COMPILED_DIR / f"{name}.yaml").read_text()))
    return set(spec["root"]["inputDefinitions"]["parameters"])


def test_the_first_runs_go_where_the_staging_overlay_put_their_rights(overlays, monkeypatch, capsys):
    env, source = first_runs_snippet()
    objects = overlays["staging"]
    namespace = next(o for o in objects if o["kind"] == "Namespace")["metadata"]["name"]
    binding = find(objects, "RoleBinding", "clinops-pipeline-runner")
    (subject,) = binding["subjects"]
    assert (subject["kind"], subject["namespace"]) == ("ServiceAccount", namespace)
    find(objects, "ServiceAccount", subject["name"])
    find(objects, "Secret", "clinops-s3")

    fake = types.ModuleType("kfp")
    fake.Client = RecordingClient
    monkeypatch.setitem(sys.modules, "kfp", fake)
    RecordingClient.made = []
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    exec(compile(source, "README.md step 6", "exec"), {"__name__": "__main__"})

    (client,) = RecordingClient.made
    assert client.namespace == namespace
    assert ("experiment", "clinops", namespace) in client.calls
    runs = {call[1]: call for call in client.calls if call[0] == "run"}
    assert set(runs) == {"pipeline-heart-disease", "pipeline-pneumonia"}  # the pipelines step 5 uploads
    for pipeline_id, (_, _, params, service_account, _) in runs.items():
        name = pipeline_id.removeprefix("pipeline-")
        assert service_account == subject["name"], name
        assert params["deploy_namespace"] == namespace, name
        assert set(params) <= pipeline_parameters(name), f"{name}: {sorted(set(params) - pipeline_parameters(name))}"
    # the RayJob's Role, secret and policies are in the overlay's namespace, not in the default kubeflow
    assert runs["pipeline-pneumonia"][2]["rayjob_namespace"] == namespace
    assert "rayjob_namespace" in pipeline_parameters("pneumonia")
    assert "heart-disease SUCCEEDED" in capsys.readouterr().out
