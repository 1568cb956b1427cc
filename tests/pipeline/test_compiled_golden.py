"""Compiled pipelines are golden files: what `make compile` writes is what is committed, and it is
a valid KFP IR pipeline spec."""

import pytest
import yaml

from pipelines import catalog
from pipelines.compile import COMPILED_DIR, compile_workload

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("workload", list(catalog.WORKLOADS))
def test_committed_yaml_equals_a_fresh_compile(workload, tmp_path):
    fresh = compile_workload(workload, tmp_path).read_text()
    committed = (COMPILED_DIR / f"{workload}.yaml").read_text()
    assert fresh == committed, f"pipelines/compiled/{workload}.yaml is stale: run `make compile`"


@pytest.mark.parametrize("workload", list(catalog.WORKLOADS))
def test_compiled_yaml_is_a_kfp_pipeline_spec(workload):
    from kfp.components import load_component_from_file

    spec, *platform = yaml.safe_load_all((COMPILED_DIR / f"{workload}.yaml").read_text())
    assert spec["schemaVersion"] == "2.1.0"
    assert spec["sdkVersion"] == "kfp-2.17.0"
    tasks = spec["root"]["dag"]["tasks"]
    for step in ("ingest", "validate", "split", "train", "evaluate", "register", "gate", "export"):
        assert any(name.startswith(step) for name in tasks), f"{workload} lacks a {step} step"
    for executor in spec["deploymentSpec"]["executors"].values():
        assert executor["container"]["image"].startswith("docker.io/clinops/clinops:")
    # in cluster, tasks that talk to MLflow or S3 get the settings and credentials as env
    executors = platform[0]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert any(e.get("secretAsEnv", [{}])[0].get("secretName") == "clinops-s3" for e in executors.values())
    # the SDK reads it back as a pipeline component (what the dashboard upload does first)
    loaded = load_component_from_file(str(COMPILED_DIR / f"{workload}.yaml"))
    assert loaded.pipeline_spec.pipeline_info.name == catalog.load(workload).PIPELINE_NAME
