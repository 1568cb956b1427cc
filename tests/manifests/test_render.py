"""make manifests: every entry point renders, every component is built by some overlay, and the command
fails when there is nothing to render or an object is invalid."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from pipelines import manifests

pytestmark = pytest.mark.unit
REPO = manifests.REPO


def test_every_entry_point_renders_objects(rendered):
    assert {f"kustomize/overlays/{o}" for o in ("local", "staging", "production")} <= set(rendered)
    assert {"kustomize/base", "manifests/serving", "manifests/rayjob", "manifests/monitoring"} <= set(rendered)
    assert all(rendered.values()), [k for k, v in rendered.items() if not v]


def test_every_component_is_built_by_an_overlay():
    used = set()
    for k in (REPO / "kustomize" / "overlays").glob("*/kustomization.yaml"):
        used |= {(k.parent / c).resolve().name for c in yaml.safe_load(k.read_text()).get("components", [])}
    components = {p.name for p in (REPO / "kustomize" / "components").iterdir() if p.is_dir()}
    assert components == {"gpu", "drift", "monitoring", "minio", "mlflow", "canary"}
    assert components <= used


def test_overlays_differ_where_they_should(overlays):
    kinds = {name: {o["kind"] for o in objs} for name, objs in overlays.items()}
    assert "PrometheusRule" not in kinds["local"] and "PrometheusRule" in kinds["staging"]
    ns = {name: {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"} for name, objs in overlays.items()}
    assert ns == {"local": {"clinops"}, "staging": {"clinops-staging"}, "production": {"clinops"}}
    gpu = [o for o in overlays["production"] if o["kind"] == "InferenceService" and o["metadata"]["name"] == "pneumonia"]
    assert gpu[0]["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_every_rendered_object_is_valid(rendered):
    assert manifests.validate_all(rendered) == []


def test_main_fails_with_nothing_to_render(tmp_path, capsys):
    assert manifests.main(tmp_path) == 1
    assert "no kustomize entry points" in capsys.readouterr().err


def _tree_with(tmp_path: Path, document: str) -> Path:
    folder = tmp_path / "manifests" / "broken"
    folder.mkdir(parents=True)
    (folder / "thing.yaml").write_text(document)
    (folder / "kustomization.yaml").write_text("resources: [thing.yaml]\n")
    return tmp_path


def test_main_fails_on_an_invalid_object(tmp_path, capsys):
    root = _tree_with(tmp_path, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\nbogus: 1\n")
    assert manifests.main(root) == 1
    err = capsys.readouterr()
    assert "FAIL manifests/broken (1 objects)" in err.out
    assert "manifests/broken: ConfigMap/c: (top): Additional properties are not allowed ('bogus' was unexpected) " \
        "(Kubernetes 1.30.0, 1.37.0)" in err.err


def test_main_fails_on_a_broken_kustomization(tmp_path, capsys):
    root = _tree_with(tmp_path, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    (root / "manifests" / "broken" / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    assert manifests.main(root) == 1
    assert "kubectl kustomize broken failed" in capsys.readouterr().err


def test_main_passes_a_valid_tree_and_fills_credentials_from_examples(tmp_path, capsys):
    root = _tree_with(tmp_path, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n")
    folder = root / "manifests" / "broken"
    (folder / "creds.env.example").write_text("AWS_ACCESS_KEY_ID=example\n")
    (folder / "kustomization.yaml").write_text(
        "resources: [thing.yaml]\nsecretGenerator:\n  - name: s\n    envs: [creds.env]\n")
    assert manifests.main(root) == 0
    assert "ok   manifests/broken (2 objects)" in capsys.readouterr().out
    assert not (folder / "creds.env").exists()  # the example is used in a copy, never written here


def test_kubectl_is_the_one_from_the_environment():
    assert Path(manifests._kubectl()).name == "kubectl" and shutil.which(manifests._kubectl())
