"""What `make compile` writes besides the golden files: the image reference is a setting, and the cluster
settings (Secrets as env, the GPU step's accelerator, node selector and toleration) are in the compiled
platform spec."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.compile import COMPILED_DIR, compile_pipeline, retarget_images

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def images(path: Path) -> set[str]:
    spec = next(yaml.safe_load_all(path.read_text()))
    return {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}


def test_registry_and_tag_replace_every_project_image(tmp_path):
    path = compile_pipeline("pneumonia", tmp_path, registry="registry.example:5000/ml", tag="2.0.1")
    assert images(path) == {"registry.example:5000/ml/clinops:2.0.1"}
    spec = next(yaml.safe_load_all(path.read_text()))
    default = spec["root"]["inputDefinitions"]["parameters"]["rayjob_image"]["defaultValue"]
    assert default == "registry.example:5000/ml/clinops-train-gpu:2.0.1"
    assert "docker.io/clinops" not in path.read_text()


def test_the_defaults_are_the_golden_files(tmp_path):
    assert images(COMPILED_DIR / "pneumonia.yaml") == {"docker.io/clinops/clinops:0.1.0"}
    assert retarget_images("image: docker.io/clinops/clinops:0.1.0") == "image: docker.io/clinops/clinops:0.1.0"


@pytest.mark.parametrize("registry, tag", [("", "1"), ("r", ""), ("r x", "1")])
def test_a_bad_registry_or_tag_is_refused_by_name(registry, tag):
    with pytest.raises(ValueError, match="must be non-empty, without spaces"):
        retarget_images("", registry, tag)


def test_the_command_line_needs_a_name_or_all():
    done = subprocess.run([sys.executable, "-m", "pipelines.compile"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "name a pipeline or pass --all" in done.stderr


def platform_executors(path: Path) -> dict:
    _, platform = yaml.safe_load_all(path.read_text())
    return platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_the_gpu_profile_is_a_golden_file_too(tmp_path):
    fresh = compile_pipeline("pneumonia", tmp_path, profile="gpu").read_text()
    assert fresh == (COMPILED_DIR / "pneumonia-gpu.yaml").read_text(), "pneumonia-gpu.yaml is stale: make compile"


# the steps each pipeline hands the platform's env (with_platform_env, deploy_after): those that read or
# write MLflow or MinIO
TRAINING_STEPS = {"exec-ingest", "exec-train", "exec-register", "exec-gate", "exec-export", "exec-deploy"}
PLATFORM_STEPS = {"heart-disease": TRAINING_STEPS, "pneumonia": TRAINING_STEPS | {"exec-evaluate"},
                  "pneumonia-gpu": TRAINING_STEPS | {"exec-evaluate"},
                  "monitoring": {"exec-load-reference", "exec-retrain"},
                  "heart-disease-batch": {"exec-score"}, "pneumonia-batch": {"exec-score"}}


@pytest.mark.parametrize("name", sorted(PLATFORM_STEPS))
def test_minio_and_mlflow_secrets_reach_the_steps_as_env(name):
    assert {p.stem for p in COMPILED_DIR.glob("*.yaml")} == set(PLATFORM_STEPS)  # no compiled pipeline left out
    executors = platform_executors(COMPILED_DIR / f"{name}.yaml")
    with_secrets = {step for step, executor in executors.items() if executor.get("secretAsEnv")}
    assert with_secrets == PLATFORM_STEPS[name]
    for step in with_secrets:
        executor = executors[step]
        secrets = {s["secretName"]: {k["envVar"] for k in s["keyToEnv"]} for s in executor["secretAsEnv"]}
        assert secrets == {"clinops-s3": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
                           "clinops-mlflow": {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}}, step
        assert all(s["optional"] for s in executor["secretAsEnv"]), step


def test_only_the_gpu_profile_places_the_train_step_on_a_gpu_node():
    spec = next(yaml.safe_load_all((COMPILED_DIR / "pneumonia-gpu.yaml").read_text()))
    resources = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "1"
    assert resources["cpuLimit"] == resources["cpuRequest"] == 8.0
    train = platform_executors(COMPILED_DIR / "pneumonia-gpu.yaml")["exec-train"]
    assert train["nodeSelector"] == {"labels": {"nvidia.com/gpu.present": "true"}}
    assert train["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    cpu = platform_executors(COMPILED_DIR / "pneumonia.yaml")
    assert not any("nodeSelector" in e or "tolerations" in e for e in cpu.values())
    cpu_spec = next(yaml.safe_load_all((COMPILED_DIR / "pneumonia.yaml").read_text()))
    assert "accelerator" not in cpu_spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]


@pytest.mark.parametrize("name, workload", [("heart-disease", "heart-disease"), ("pneumonia", "pneumonia")])
def test_the_deploy_step_follows_export_unless_it_is_off(name, workload):
    spec = next(yaml.safe_load_all((COMPILED_DIR / f"{name}.yaml").read_text()))
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["deploy_mode"]["defaultValue"] == "auto"
    assert params["canary_percent"]["defaultValue"] == 10
    assert params["canary_limits"]["defaultValue"] == "error_rate=0.05,p99_latency_s=1.0,min_requests=20"
    condition = next(t for t in spec["root"]["dag"]["tasks"].values() if "triggerPolicy" in t)
    assert condition["taskInfo"]["name"] == "deploy-on"
    assert condition["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--deploy_mode'] != 'off'"
    assert condition["dependentTasks"] == ["export"]
    inner = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]["deploy"]
    assert inner["inputs"]["parameters"]["workload"]["runtimeValue"]["constant"] == workload
    assert inner["inputs"]["parameters"]["export_json"]["componentInputParameter"] == "pipelinechannel--export-Output"
    assert inner["cachingOptions"] == {}  # caching off: a rollout is never answered from the cache
    assert "exec-deploy" in platform_executors(COMPILED_DIR / f"{name}.yaml")  # MLflow/S3 env in the cluster
