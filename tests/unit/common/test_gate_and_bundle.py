"""The promotion gate's decisions, the bundle contract and the local store."""

import json

import pytest

from components.common import bundle, gate

pytestmark = pytest.mark.unit


def test_floors_parse_and_reject_garbage():
    assert gate.parse_floors("roc_auc=0.85, recall=0.7") == {"roc_auc": 0.85, "recall": 0.7}
    assert gate.parse_floors("") == {}
    with pytest.raises(ValueError, match="name=value"):
        gate.parse_floors("roc_auc>0.8")


@pytest.mark.parametrize(("candidate", "champion_score", "promote", "reason"), [
    (0.90, None, True, "no current champion"),
    (0.80, None, False, "below the floor 0.85"),
    (0.90, 0.92, False, "loses to champion v3"),
    (0.92, 0.92, True, "not worse than champion v3"),
])
def test_gate_decisions(candidate, champion_score, promote, reason):
    champion = None if champion_score is None else "3"
    decision = gate.decide({"roc_auc": candidate}, {"roc_auc": 0.85}, "roc_auc", champion, champion_score)
    assert decision.promote is promote
    assert reason in decision.summary()


def test_gate_fails_closed_when_a_floored_metric_is_missing():
    decision = gate.decide({"roc_auc": 0.95}, {"recall": 0.5}, "roc_auc", None, None)
    assert not decision.promote
    assert "recall was not measured" in decision.summary()


def _bundle(folder):
    (folder / "drift").mkdir(parents=True)
    (folder / "model.joblib").write_bytes(b"model")
    bundle.write_json(folder, "schema.json", {"kind": "tabular"})
    bundle.write_json(folder, "drift/settings.json", {"detector": "TabularDrift"})
    (folder / "drift" / "reference.npz").write_bytes(b"npz")
    bundle.BundleManifest(workload="w", model_name="w", model_version="4", framework="sklearn",
                          model_file="model.joblib").write(folder)


def test_incomplete_bundles_are_refused(tmp_path):
    _bundle(tmp_path / "b")
    assert bundle.check_complete(tmp_path / "b").model_version == "4"
    (tmp_path / "b" / "schema.json").unlink()
    with pytest.raises(FileNotFoundError, match="schema.json"):
        bundle.check_complete(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="not a serving bundle"):
        bundle.BundleManifest.read(tmp_path)


def test_publish_to_a_local_store_moves_the_champion_pointer_only_when_promoted(tmp_path):
    _bundle(tmp_path / "b")
    store = str(tmp_path / "store")
    assert bundle.champion_uri("w", store) is None
    uri = bundle.publish(tmp_path / "b", "w", "4", promoted=False, store=store)
    assert (tmp_path / "store" / "w" / "4" / "model.joblib").read_bytes() == b"model"
    assert bundle.champion_uri("w", store) is None
    bundle.publish(tmp_path / "b", "w", "4", promoted=True, store=store)
    assert bundle.champion_uri("w", store) == uri
    pointer = json.loads((tmp_path / "store" / "w" / "champion.json").read_text())
    assert pointer["model_version"] == "4"
