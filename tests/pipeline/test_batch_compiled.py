"""The batch-scoring pipelines' compiled YAML are golden files like the others: what `make compile`
writes is what is committed, and the dashboard can load them."""

import pytest
import yaml

from pipelines import batch_scoring, catalog
from pipelines.compile import COMPILED_DIR, compile_pipeline

pytestmark = pytest.mark.unit
NAMES = [p.PIPELINE_NAME for p in batch_scoring.BY_WORKLOAD.values()]


@pytest.mark.parametrize("name", NAMES)
def test_committed_yaml_equals_a_fresh_compile(name, tmp_path):
    assert name in catalog.COMPILED
    assert compile_pipeline(name, tmp_path).read_text() == (COMPILED_DIR / f"{name}.yaml").read_text(), (
        f"pipelines/compiled/{name}.yaml is stale: run `make compile`")


@pytest.mark.parametrize("name", NAMES)
def test_compiled_yaml_is_a_pipeline_with_the_scoring_step_and_its_artifacts(name):
    from kfp.components import load_component_from_file

    spec, *platform = yaml.safe_load_all((COMPILED_DIR / f"{name}.yaml").read_text())
    assert list(spec["root"]["dag"]["tasks"]) == ["score"]
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert {"source", "bundle_uri", "backend", "actors", "output_uri", "rayjob_image"} <= set(inputs)
    assert inputs["backend"]["defaultValue"] == "local"
    outputs = spec["components"]["comp-score"]["outputDefinitions"]["artifacts"]
    assert {k: v["artifactType"]["schemaTitle"] for k, v in outputs.items()} == {
        "results": "system.Dataset", "summary": "system.Metrics", "report_html": "system.HTML",
        "report_md": "system.Markdown"}
    executor = next(iter(spec["deploymentSpec"]["executors"].values()))
    assert executor["container"]["image"].startswith("docker.io/clinops/clinops:")
    body = executor["container"]["command"][-1]
    assert "from components.batch import step" in body  # the body runs the command; it imports no serving code
    assert "from inference" not in body and "import inference" not in body
    executors = platform[0]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert any(e.get("secretAsEnv", [{}])[0].get("secretName") == "clinops-s3" for e in executors.values())
    assert load_component_from_file(str(COMPILED_DIR / f"{name}.yaml")).pipeline_spec.pipeline_info.name == name
