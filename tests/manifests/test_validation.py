"""Each validator catches what it is there for: the checks are proven able to fail on a bad object
derived from a good rendered one."""

from __future__ import annotations

import copy

import pytest
from support.manifests import find

from pipelines import manifests

pytestmark = pytest.mark.unit


@pytest.fixture
def isvc(overlays):
    return copy.deepcopy(find(overlays["production"], "InferenceService", "heart-disease"))


def test_inference_service_unknown_field_is_an_error(isvc):
    assert manifests.problems(isvc) == []
    isvc["spec"]["predictor"]["model"]["storageURI"] = isvc["spec"]["predictor"]["model"].pop("storageUri")
    isvc["spec"]["transformer"]["containers"][0]["resources"]["limit"] = {"cpu": "1"}
    assert manifests.problems(isvc) == [
        "spec.predictor.model.storageURI: unknown field of V1beta1ModelSpec",
        "spec.transformer.containers[0].resources.limit: unknown field of V1ResourceRequirements"]


def test_inference_service_wrong_type_and_enum(isvc):
    isvc["spec"]["predictor"]["minReplicas"] = "one"
    isvc["spec"]["predictor"]["logger"]["mode"] = "everything"
    isvc["spec"]["predictor"]["model"]["protocolVersion"] = "v3"
    assert sorted(manifests.problems(isvc)) == [
        "spec.predictor.logger.mode: 'everything' is not one of ['all', 'request', 'response']",
        "spec.predictor.minReplicas: expected int, got str 'one'",
        "spec.predictor.model.protocolVersion: 'v3' is not one of ['grpc-v1', 'grpc-v2', 'v1', 'v2']"]


def test_serving_runtime_is_checked_strictly(overlays):
    runtime = copy.deepcopy(find(overlays["staging"], "ServingRuntime", "clinops-torch"))
    assert manifests.problems(runtime) == []
    runtime["spec"]["supportedModelFormats"][0]["autoselect"] = True
    runtime["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    assert sorted(manifests.problems(runtime)) == [
        "spec.containers[0].ports[0].containerPort: expected int, got str '8080'",
        "spec.supportedModelFormats[0].autoselect: unknown field of V1alpha1SupportedModelFormat"]


def test_core_kinds_are_strict_for_the_target_version(overlays):
    sts = copy.deepcopy(find(overlays["local"], "StatefulSet", "minio"))
    assert manifests.problems(sts) == []
    sts["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    assert manifests.problems(sts) == [
        "spec/template/spec/containers/0/securityContext: "
        "Additional properties are not allowed ('readOnlyRootFS' was unexpected) (Kubernetes 1.30.0, 1.37.0)"]


def test_rayjob_schema_and_its_pod_templates(rendered):
    job = copy.deepcopy(find(rendered["manifests/rayjob"], "RayJob", "pneumonia-train"))
    assert manifests.problems(job) == []
    job["spec"]["entryPoint"] = job["spec"].pop("entrypoint")
    job["spec"]["submissionMode"] = "Batch"
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["gpus"] = 1
    found = manifests.problems(job)
    assert "spec: Additional properties are not allowed ('entryPoint' was unexpected)" in found
    assert any(p.startswith("spec/submissionMode: 'Batch' is not one of") for p in found)
    assert ("spec.rayClusterSpec.workerGroupSpecs[0].template: template/spec/containers/0: "
            "Additional properties are not allowed ('gpus' was unexpected) (Kubernetes 1.30.0, 1.37.0)") in found
    assert len(found) == 3


def test_monitoring_crds_against_our_schemas(rendered):
    objs = rendered["manifests/monitoring"]
    rule = copy.deepcopy(find(objs, "PrometheusRule", "clinops"))
    monitor = copy.deepcopy(find(objs, "PodMonitor", "clinops-serving"))
    assert manifests.problems(rule) == [] and manifests.problems(monitor) == []
    rule["spec"]["groups"][0]["rules"][0]["record"] = "clinops:errors"
    monitor["spec"]["podMetricsEndpoints"][0]["interval"] = "15 seconds"
    monitor["spec"]["endpoints"] = [{"port": "http"}]
    assert manifests.problems(rule) == [
        'spec/groups/0/rules/0: fails the schema\'s oneOf rule [{"required": ["alert"]}, {"required": ["record"]}]']
    assert manifests.problems(monitor) == [
        "spec/podMetricsEndpoints/0/interval: '15 seconds' does not match " + repr(
            manifests._schema("monitors.schema.yaml")["$defs"]["duration"]["pattern"]),
        'spec: fails the schema\'s not rule {"required": ["endpoints"]}']


def test_unknown_kinds_are_errors():
    assert manifests.problems({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}) == [
        "no schema for example.com/v1 Widget (Kubernetes 1.30.0, 1.37.0)"]
    assert manifests.problems({"kind": "ConfigMap"}) == ["not a Kubernetes object (apiVersion and kind are required)"]


def test_core_kinds_must_hold_on_the_oldest_kubernetes_too(overlays):
    deployment = copy.deepcopy(find(overlays["local"], "Deployment", "mlflow"))
    deployment["spec"]["template"]["spec"]["resources"] = {"limits": {"cpu": "1"}}  # pod-level: 1.32 on
    assert manifests.problems(deployment) == [
        "spec/template/spec: Additional properties are not allowed ('resources' was unexpected) (Kubernetes 1.30.0)"]
