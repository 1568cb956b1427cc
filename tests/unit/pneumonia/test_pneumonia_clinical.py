"""The pneumonia clinical assessment (val fits calibration and threshold, test measures) and its calibration
reaching the transformer through the bundle."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from support.kfp_artifacts import Art

from bundle import open_bundle
from bundle.calibration import Calibration
from components.pneumonia import evaluation, export, phantom, split
from components.pneumonia import model as model_lib
from inference.transformer.model import make_codec
from inference.transformer.settings import TransformerSettings

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("xray")
    phantom.generate(root / "chest_xray", phantom.PhantomSpec(counts={"train": 16, "val": 24, "test": 40}, size=40,
                                                             seed=5))
    arrays, summary = split.build_splits(str(root), split.SplitConfig(32, 32, 1, min_val=8, seed=0))
    splits_dir = split.save(arrays, summary, root / "splits")
    torch.manual_seed(0)
    net = model_lib.build_model("efficientnet_b0", 1, 2, 0.0).eval()
    return net, splits_dir, evaluation.evaluate(net, splits_dir, n_resamples=200)


def test_the_threshold_is_chosen_on_val_for_the_target_sensitivity(evaluated):
    net, splits_dir, result = evaluated
    val = split.load(splits_dir, "val")
    contract = split.load_contract(splits_dir)
    calibration = Calibration.from_dict(result["calibration"])
    p_val = np.array([calibration.apply_one(float(v)) for v in evaluation.predict(net, val.x, contract)[0][:, 1]])
    assert (p_val[val.y == 1] >= result["threshold"]).mean() >= evaluation.TARGET_SENSITIVITY
    assert calibration.operating_point.threshold == result["threshold"] == result["metrics"]["threshold"]
    m = result["metrics"]
    assert m["roc_auc.lower"] <= m["roc_auc"] <= m["roc_auc.upper"] and "ece" in m and "val_roc_auc" in m
    assert "no per-image source or acquisition attribute" in result["card_markdown"]
    assert not any(k.startswith("subgroup.") for k in m)
    json.dumps(result)  # the evaluation artifact is JSON


def test_the_transformer_serves_the_bundles_calibrated_probability(evaluated, tmp_path):
    net, splits_dir, result = evaluated
    contract = split.load_contract(splits_dir)
    # a Platt map that certainly changes the probability, as a recalibrated bundle holds
    calibration = Calibration("platt", a=2.0, b=-0.3)
    test = split.load(splits_dir, "test")
    softmax, embedding = evaluation.predict(net, test.x[:8], contract)
    export.write_bundle(tmp_path, net, contract, "efficientnet_b0", 0.42, softmax, embedding, "1", {}, None, False,
                        calibration=calibration)
    served = open_bundle(tmp_path, "pneumonia")
    assert served.calibration == calibration and served.schema.threshold == 0.42
    codec = make_codec("pneumonia", served.schema, TransformerSettings(workload="pneumonia"), served.calibration)
    logits = np.log(softmax)  # softmax of log-probabilities gives them back
    out, index = codec.decode({"logits": logits})
    expected = 1 / (1 + np.exp(-(2.0 * np.log(softmax[:, 1] / softmax[:, 0]) - 0.3)))
    np.testing.assert_allclose(out["probability"], expected, rtol=1e-5)
    assert [codec.classes[i] for i in index] == ["PNEUMONIA" if e >= 0.42 else "NORMAL" for e in expected]


def test_gradcam_labels_each_image_on_the_served_probability(evaluated):
    net, splits_dir, _ = evaluated
    raw = evaluation.predict(net, split.load(splits_dir, "test").x, split.load_contract(splits_dir))[0][:, 1]
    recalibrated = Calibration("platt", a=1.0, b=8.0)  # serves every probability far above the model's own
    threshold = 0.9  # on the served scale, as calibration.json's operating point is
    assert raw.max() < threshold  # compared with the raw softmax, every image would read NORMAL
    page = evaluation.gradcam_html(net, splits_dir, threshold, recalibrated, n=4)
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert len(captions) == 4 and all(" · predicted PNEUMONIA · " in c for c in captions), captions
    shown = re.findall(r"P\(pneumonia\) ([0-9.]+) \(model ([0-9.]+)\)", page)
    assert len(shown) == 4
    for served, model in shown:
        assert float(served) == pytest.approx(recalibrated.apply_one(float(model)), abs=2e-3)
        assert float(served) >= threshold > float(model)
    assert "recalibration: platt" in page


@pytest.fixture(scope="module")
def component_outputs(evaluated, tmp_path_factory):
    """The evaluate component's body run on the fixture's model, its outputs by name."""
    from components.pneumonia import component, train_loop

    net, splits_dir, _ = evaluated
    out = tmp_path_factory.mktemp("evaluate")
    model_dir = out / "model"
    model_dir.mkdir()
    torch.save(net.state_dict(), model_dir / train_loop.BEST)
    (model_dir / train_loop.CONFIG).write_text(json.dumps({"variant": "efficientnet_b0", "dropout": 0.0, "epochs": 3,
                                                           "lr": 0.001}))
    arts = {name: Art(out / name) for name in ("metrics", "classification", "plots", "model_card", "gradcam",
                                               "evaluation")}
    component.evaluate.python_func(model=Art(model_dir), splits=Art(splits_dir), **arts, target_sensitivity=0.9,
                                   bootstrap_resamples=150, seed=3)
    return arts


def test_the_evaluate_step_writes_a_markdown_model_card_for_the_kfp_ui(component_outputs):
    card = Path(component_outputs["model_card"].path).read_text()
    evaluation_dir = Path(component_outputs["evaluation"].path)
    result = json.loads((evaluation_dir / "evaluation.json").read_text())
    assert card.startswith("# Model card — pneumonia on chest X-rays\n")
    assert "torchvision **efficientnet_b0** on 1-channel 32×32 images" in card and "'epochs': 3" in card
    assert f"this model's: **{result['metrics']['val_roc_auc']:.4f}**" in card
    assert f"Served threshold {result['threshold']:.3f}" in card and "## Calibration" in card
    assert "| test | 40 |" in card and "## Subgroups" in card and "## Limitations" in card
    assert result["card_markdown"] in card  # the clinical sections, whole
    assert (evaluation_dir / "plots" / "model_card.md").read_text() == card  # MLflow's copy
    assert "150 resamples" in card  # the step's setting, not the default


def test_the_gate_compares_with_the_champion_on_the_evaluate_steps_resamples(evaluated, component_outputs,
                                                                              clinops_home, monkeypatch):
    import mlflow
    import mlflow.pytorch  # the module itself, not its lazy stand-in, so that monkeypatch reaches the gate

    from components.common import registry
    from components.pneumonia import component
    from components.pneumonia.labels import MODEL_NAME, WORKLOAD

    net, splits_dir, _ = evaluated
    registry.configure(WORKLOAD)
    client = mlflow.MlflowClient()
    client.create_registered_model(MODEL_NAME)
    v1, v2 = (str(client.create_model_version(MODEL_NAME, source=str(clinops_home), run_id=None).version)
              for _ in range(2))
    client.set_registered_model_alias(MODEL_NAME, registry.CHAMPION, v1)
    monkeypatch.setattr(mlflow.pytorch, "load_model", lambda uri, dst_path=None, map_location=None: net)  # v1: this model
    out = component.gate.python_func(version=v2, splits=Art(splits_dir), evaluation=component_outputs["evaluation"],
                                     floors="")
    assert out.promoted is False and "champion kept" in out.reasons  # the same model cannot be better
    assert "paired bootstrap of 150 resamples" in out.reasons  # evaluate's setting, not the default 1000
    assert registry.alias_version(MODEL_NAME, registry.CHAMPION) == v1
