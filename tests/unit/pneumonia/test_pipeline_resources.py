"""The train step's pod resources are a compile-time profile: the GPU profile's compiled YAML carries the
accelerator request, the default one does not; the ``gpu`` run profile holds the GPU training setup."""

from __future__ import annotations

import pytest
import yaml

from pipelines import compile as compile_lib
from pipelines import pneumonia

pytestmark = pytest.mark.unit


def _train_resources(path) -> dict:
    spec = next(yaml.safe_load_all(path.read_text()))
    (train,) = [e for name, e in spec["deploymentSpec"]["executors"].items() if name == "exec-train"]
    return train["container"]["resources"]


def test_the_gpu_compile_profile_requests_an_accelerator_and_the_default_does_not(tmp_path):
    gpu = compile_lib.main(["pneumonia", "--profile", "gpu", "--out-dir", str(tmp_path)])
    assert gpu == 0
    resources = _train_resources(tmp_path / "pneumonia-gpu.yaml")
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "1"
    assert resources["resourceCpuRequest"] == resources["resourceCpuLimit"] == "8"
    assert resources["resourceMemoryRequest"] == resources["resourceMemoryLimit"] == "64G"

    default = _train_resources(compile_lib.compile_pipeline("pneumonia", tmp_path))
    assert "accelerator" not in default
    assert default["resourceCpuRequest"] == default["resourceCpuLimit"] == "4"
    assert default["resourceMemoryRequest"] == "16G"
    # the committed golden file is the default profile
    assert (compile_lib.COMPILED_DIR / "pneumonia.yaml").read_text() == (tmp_path / "pneumonia.yaml").read_text()


def test_unknown_compile_profiles_are_refused_by_name(tmp_path):
    with pytest.raises(KeyError, match="pneumonia has no compile profile 'tpu'; known: cpu, gpu"):
        compile_lib.compile_pipeline("pneumonia", tmp_path, "tpu")
    with pytest.raises(KeyError, match="monitoring has no compile profile 'gpu'; known: none"):
        compile_lib.compile_pipeline("monitoring", tmp_path, "gpu")
    assert list(tmp_path.iterdir()) == []


def test_gpu_run_profile_is_the_gpu_training_setup():
    gpu = pneumonia.PROFILES["gpu"]
    assert gpu["image_size"] == 224 and gpu["use_gpu"] is True and gpu["compile_model"] is True
    assert gpu["batch_size"] == 0 and gpu["lr_scaling"] == "sqrt"  # sized for the variant, lr scaled
    arguments = pneumonia.PIPELINE.component_spec.inputs
    assert set(gpu) <= set(arguments)  # every key is a pipeline argument
