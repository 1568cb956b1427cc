"""The whole pneumonia pipeline through kfp.local (the suite's small profile), asserting on what it
leaves behind: the run record, MLflow versions and aliases, and a serving bundle whose TorchScript
answers like the registered model on images preprocessed by the bundle's own schema; then the real runtimes
serve that champion and answer like the registered model on the run's test split (end to end)."""

from __future__ import annotations

import io
import json

import mlflow
import numpy as np
import pytest
import torch
from PIL import Image
from support.served import assert_pneumonia_serves_what_was_registered

from bundle import Manifest, open_bundle
from components.common.publish import champion_uri
from components.common.registry import CHALLENGER, CHAMPION
from components.common.settings import get_settings
from components.pneumonia import phantom, preprocess
from pipelines import local

pytestmark = [pytest.mark.pipeline, pytest.mark.slow, pytest.mark.e2e]


def _serving_input(schema, n: int = 6) -> np.ndarray:
    """JPEG bytes → the bundle's resize policy → normalised float32, as a transformer would do it."""
    rng = np.random.default_rng(11)
    contract = preprocess.ImageContract.from_dict(schema.image.to_dict())
    images = []
    for i in range(n):
        pixels = (phantom.render(rng, 150, 120 + 10 * i, bool(i % 2)) * 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).convert("RGB").save(buf, format="JPEG")
        decoded = Image.open(io.BytesIO(buf.getvalue()))
        images.append(preprocess.to_uint8(decoded, contract.height, contract.width, contract.channels))
    return preprocess.normalise(np.stack(images), contract)


def test_pipeline_trains_registers_gates_exports_and_serves(clinops_home, tmp_path, temp_leftovers):
    first = local.run("pneumonia", "test")
    assert first["status"] == "succeeded"
    metrics = first["metrics"]
    assert 0.6 <= metrics["roc_auc"] <= 1.0
    for name in ("accuracy", "sensitivity", "specificity"):
        assert 0.0 <= metrics[name] <= 1.0
    assert 0.0 <= first["threshold"] <= 1.0 and metrics["threshold"] == first["threshold"]
    assert first["model_name"] == "pneumonia" and first["model_version"] == "1" and first["promoted"] is True
    recorded = json.loads((clinops_home / "pipelines" / "pneumonia" / "last-run.json").read_text())
    assert recorded["bundle_uri"] == first["bundle_uri"] and recorded["status"] == "succeeded"

    mlflow.set_tracking_uri(get_settings().tracking_uri)
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("pneumonia", CHAMPION).version) == "1"
    run = client.get_run(client.get_model_version("pneumonia", "1").run_id)
    assert run.data.metrics["roc_auc"] == pytest.approx(metrics["roc_auc"])
    assert len(client.get_metric_history(run.info.run_id, "epoch_val_auc")) == 5  # per-epoch curve
    tuning_runs = mlflow.search_runs(experiment_names=["pneumonia"], filter_string="tags.step = 'tuning'")
    assert len(tuning_runs) == 1

    folder = first["bundle_uri"]
    exported = open_bundle(folder, "pneumonia")
    manifest = exported.manifest
    assert (manifest.framework, manifest.model_file) == ("pytorch", "model.pt")
    assert "model_config.json" in manifest.files
    assert manifest.promoted is True and manifest.model_version == "1"
    schema = exported.schema
    assert schema.image.height == 64 and schema.image.channels == 1
    assert schema.threshold == pytest.approx(first["threshold"])
    config = exported.model_config
    assert (config.variant, config.classes, config.embedding_dim, config.outputs) == (
        "efficientnet_b0", ("NORMAL", "PNEUMONIA"), 1280, ("logits", "embedding"))
    reference = np.load(f"{folder}/drift/reference.npz")
    embedding = reference[exported.drift.reference_array]
    assert embedding.shape[1] == 1280 and reference["softmax"].shape == (len(embedding), 2)
    np.testing.assert_allclose(reference["softmax"].sum(1), 1.0, atol=1e-5)
    assert exported.drift.detector == "KSDrift" and exported.drift.dim == 1280

    x = torch.from_numpy(_serving_input(schema))
    scripted = torch.jit.load(f"{folder}/model.pt")
    logits, embedding = scripted(x)
    assert logits.shape == (6, 2) and embedding.shape == (6, 1280)
    registered = mlflow.pytorch.load_model("models:/pneumonia@champion", dst_path=str(tmp_path),
                                         map_location="cpu").eval()
    with torch.no_grad():
        torch.testing.assert_close(logits, registered(x), rtol=1e-4, atol=1e-4)
    assert_pneumonia_serves_what_was_registered(clinops_home, first)

    # A second run held to an unreachable floor stays challenger; the champion and its bundle stay.
    second = local.run("pneumonia", "test", epochs=1, floors="roc_auc=0.9999")
    assert second["model_version"] == "2" and second["promoted"] is False
    assert "below the floor" in second["gate_reasons"] and "champion v1" in second["gate_reasons"]
    assert str(client.get_model_version_by_alias("pneumonia", CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias("pneumonia", CHALLENGER).version) == "2"
    assert champion_uri("pneumonia") == first["bundle_uri"]
    assert Manifest.read(second["bundle_uri"]).promoted is False
    assert temp_leftovers() == []  # training's checkpoints and the gate's download of the champion
