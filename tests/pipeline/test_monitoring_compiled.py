"""The monitoring pipeline's compiled YAML is a golden file like the training pipelines': what `make
compile` writes is what is committed, and the dashboard can load it."""

import pytest
import yaml

from pipelines import catalog, monitoring
from pipelines.compile import COMPILED_DIR, compile_all, compile_pipeline

pytestmark = pytest.mark.unit

PATH = COMPILED_DIR / f"{monitoring.NAME}.yaml"


def test_committed_yaml_equals_a_fresh_compile(tmp_path):
    assert compile_pipeline(monitoring.NAME, tmp_path).read_text() == PATH.read_text(), (
        "pipelines/compiled/monitoring.yaml is stale: run `make compile`")


def test_compile_all_writes_it_beside_every_training_pipeline(tmp_path):
    written = {p.name for p in compile_all(tmp_path)}
    assert written == {f"{name}.yaml" for name in catalog.WORKLOADS} | {
        "monitoring.yaml", "pneumonia-gpu.yaml", "heart-disease-batch.yaml", "pneumonia-batch.yaml"}
    assert tuple(catalog.WORKLOADS) == tuple(catalog.PIPELINE_MODULES)  # still one training pipeline each


def test_compiled_yaml_is_a_kfp_pipeline_spec_with_the_monitoring_steps():
    from kfp.components import load_component_from_file

    spec, *platform = yaml.safe_load_all(PATH.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"load-reference", "read-observations", "drift-report", "retrain"}
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert {"workload", "hours", "since", "until", "log_dir", "retrain_on_drift", "kfp_host"} <= set(inputs)
    assert inputs["retrain_on_drift"]["defaultValue"] is False
    outputs = spec["components"]["comp-drift-report"]["outputDefinitions"]["artifacts"]
    assert {k: v["artifactType"]["schemaTitle"] for k, v in outputs.items()} == {
        "report_html": "system.HTML", "report_json": "system.Artifact", "summary_md": "system.Markdown"}
    for executor in spec["deploymentSpec"]["executors"].values():
        assert executor["container"]["image"].startswith("docker.io/clinops/clinops:")
    executors = platform[0]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert any(e.get("secretAsEnv", [{}])[0].get("secretName") == "clinops-s3" for e in executors.values())
    loaded = load_component_from_file(str(PATH))
    assert loaded.pipeline_spec.pipeline_info.name == monitoring.PIPELINE_NAME
