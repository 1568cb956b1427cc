"""The InferenceService the deploy step creates in a namespace that has none is the one the overlays deploy:
equal to the staging overlay's (which adds only a canary share and kustomize's managed-by label), valid for
KServe's typed models, and it passes the policy tests/manifests applies to the overlays (hardening, pinned
images, no literal credential, a NetworkPolicy for each of its pods, the logger at its own drift sidecar)."""

from __future__ import annotations

import copy
from urllib.parse import urlparse

import k8s_policy as policy
import pytest
from kubernetes.client import ApiClient
from support.manifests import OVERLAYS, find

from bundle import workloads
from components.deploy import bootstrap
from pipelines import manifests

pytestmark = pytest.mark.unit
WORKLOADS = ("heart-disease", "pneumonia")
FIRST = "s3://models/bundles/{workload}/1"  # what the overlays start from


def built(workload: str, namespace: str = "clinops-staging", **images) -> dict:
    obj = bootstrap.build(workload, namespace, workload, FIRST.format(workload=workload), **images)
    return ApiClient().sanitize_for_serialization(obj)  # what KServeClient.create sends


def platform(objects: list[dict]) -> list[dict]:
    """An overlay's objects without its InferenceServices: what a bootstrap object lands among."""
    return [o for o in objects if o["kind"] != "InferenceService"]


@pytest.mark.parametrize("workload", WORKLOADS)
def test_the_bootstrap_object_is_the_staging_overlays(overlays, workload):
    deployed = copy.deepcopy(find(overlays["staging"], "InferenceService", workload))
    assert deployed["metadata"]["labels"].pop("app.kubernetes.io/managed-by") == "kustomize"
    for component in ("predictor", "transformer"):
        deployed["spec"][component].pop("canaryTrafficPercent", None)  # the canary component's; a first revision takes all
    assert built(workload) == deployed


@pytest.mark.parametrize("workload", WORKLOADS)
def test_the_bootstrap_object_is_valid_for_kserve(workload):
    assert manifests.problems(built(workload)) == []
    broken = built(workload)
    broken["spec"]["predictor"]["logger"]["mode"] = "everything"
    assert manifests.problems(broken) != []  # the check does look at it


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_bootstrap_objects_pass_the_overlay_policy(overlays, overlay):
    objects = platform(overlays[overlay]) + [built(w, f"ns-{overlay}") for w in WORKLOADS]
    assert sum(1 for w in objects[-2:] for _ in policy.containers(w)) == 6  # model, transformer, drift per workload
    assert policy.hardening(objects) == []
    assert policy.images(objects) == []
    assert policy.plaintext_secrets(objects) == []
    assert policy.network_policies(objects) == []


def test_the_policy_refuses_the_old_bootstrap_labels(overlays):
    obj = built("heart-disease")
    for component in ("predictor", "transformer"):
        obj["spec"][component]["labels"] = {"clinops/workload": "heart-disease"}
    found = policy.network_policies(platform(overlays["staging"]) + [obj])
    assert found == [f"InferenceService/heart-disease spec.{c}: no NetworkPolicy selects its pods "
                     "(labels {'clinops/workload': 'heart-disease'})" for c in ("predictor", "transformer")]


@pytest.mark.parametrize("workload", WORKLOADS)
def test_the_logger_reaches_the_bootstrap_drift_sidecar(overlays, workload):
    from test_serving_contract import entrypoint_args

    from inference.drift.settings import parse

    predictor = built(workload)["spec"]["predictor"]
    url = urlparse(predictor["logger"]["url"])
    assert url.hostname == "localhost" and url.port == workloads.get(workload).ports.drift
    (drift,) = predictor["containers"]
    settings = parse(entrypoint_args("drift") + drift["args"], environ={})
    assert (settings.workload, settings.port, settings.bundle_store) == (workload, url.port, "s3://models/bundles")
    assert predictor["annotations"]["clinops.io/drift-port"] == str(url.port)
    assert predictor["serviceAccountName"] == find(overlays["staging"], "ServiceAccount", "clinops-serving")["metadata"]["name"]


def test_the_bootstrap_images_follow_the_registry_and_tag(overlays):
    obj = built("pneumonia", registry="registry.example:5000/ml", tag="2.0.1")
    images = sorted(c["image"] for _, c, _ in policy.containers(obj) if c.get("image"))
    assert images == ["registry.example:5000/ml/drift:2.0.1", "registry.example:5000/ml/transformer:2.0.1"]
