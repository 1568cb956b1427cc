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
