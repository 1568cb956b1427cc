"""Policy over what the overlays apply (and the RayJob the pipeline creates): hardened containers,
pinned images, no credential in git or in a literal value, and NetworkPolicies around every pod.
Each check also refuses a bad object, so none can pass by finding nothing to look at."""

from __future__ import annotations

import copy
import subprocess

import k8s_policy as policy
import pytest
from support.manifests import OVERLAYS, find

from pipelines import manifests

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_comply(overlays, overlay):
    objects = overlays[overlay]
    assert sum(1 for o in objects for _ in policy.containers(o)) >= 8  # the checks see the containers
    assert policy.hardening(objects) == []
    assert policy.images(objects) == []
    assert policy.plaintext_secrets(objects) == []
    assert policy.network_policies(objects) == []


def test_the_rayjob_template_complies(rendered):
    objects = rendered["manifests/rayjob"]
    assert policy.hardening(objects) == [] and policy.images(objects) == []


def test_the_rayjob_template_runs_the_gpu_training_image(rendered, overlays):
    from components.common.image import TRAIN_GPU_IMAGE

    job = find(rendered["manifests/rayjob"], "RayJob", "pneumonia-train")
    images = {where: c["image"] for where, c, _pod in policy.containers(job)}
    assert images == {"rayClusterSpec.head.containers[ray-head]": TRAIN_GPU_IMAGE,
                      "rayClusterSpec.gpu-workers.containers[ray-worker]": TRAIN_GPU_IMAGE}
    assert TRAIN_GPU_IMAGE == "docker.io/clinops/clinops-train-gpu:0.1.0"  # what make images builds and tags
    # no overlay renders it (the train step creates RayJobs from the file), so no kustomize images: pins it
    assert [o for objects in overlays.values() for o in objects if o["kind"] == "RayJob"] == []


def test_the_rayjob_pods_are_let_through_by_the_overlays_policies(rendered, overlays):
    job = find(rendered["manifests/rayjob"], "RayJob", "pneumonia-train")
    for overlay in OVERLAYS:
        assert policy.network_policies(overlays[overlay] + [job]) == []
    unlabelled = copy.deepcopy(job)
    unlabelled["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["metadata"]["labels"] = {}
    assert policy.network_policies(overlays["staging"] + [unlabelled]) == [
        "RayJob/pneumonia-train rayClusterSpec.head: no NetworkPolicy selects its pods (labels {})"]


def test_hardening_refuses_root_writable_and_unbounded_containers(overlays):
    objects = copy.deepcopy(overlays["staging"])
    mlflow = find(objects, "Deployment", "mlflow")["spec"]["template"]["spec"]
    mlflow["securityContext"].pop("runAsNonRoot")
    container = mlflow["containers"][0]
    container["securityContext"] = {"runAsNonRoot": False, "readOnlyRootFilesystem": False, "privileged": True}
    del container["resources"]["limits"]
    assert policy.hardening(objects) == [f"Deployment/mlflow spec.template.spec.containers[mlflow]: {p}" for p in (
        "runAsNonRoot is not true", "readOnlyRootFilesystem is not true", "allowPrivilegeEscalation is not false",
        "privileged", "capabilities do not drop ALL", "no cpu limits", "no memory limits")]


def test_hardening_of_a_kserve_model_comes_from_its_runtime(overlays):
    objects = copy.deepcopy(overlays["production"])
    runtime = find(objects, "ServingRuntime", "clinops-sklearn")["spec"]["containers"][0]
    runtime["securityContext"]["readOnlyRootFilesystem"] = False
    assert policy.hardening(objects) == [
        "ServingRuntime/clinops-sklearn spec.containers[kserve-container]: readOnlyRootFilesystem is not true",
        "InferenceService/heart-disease spec.predictor.model: readOnlyRootFilesystem is not true"]


def test_images_refuses_latest_and_untagged(overlays):
    objects = copy.deepcopy(overlays["local"])
    find(objects, "StatefulSet", "minio")["spec"]["template"]["spec"]["containers"][0]["image"] = "quay.io/minio/minio"
    find(objects, "InferenceService", "pneumonia")["spec"]["transformer"]["containers"][0]["image"] = \
        "localhost:5000/clinops/transformer:latest"
    assert sorted(policy.images(objects)) == [
        "InferenceService/pneumonia spec.transformer.containers[kserve-container]: "
        "image localhost:5000/clinops/transformer:latest is latest",
        "StatefulSet/minio spec.template.spec.containers[minio]: image quay.io/minio/minio has no tag"]
    assert policy.images([{"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "image": "registry:5000/x@sha256:" + "0" * 64}]}}]) == []


def test_plaintext_secrets_refuses_literal_credentials(overlays):
    objects = copy.deepcopy(overlays["local"])
    env = find(objects, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]["env"]
    env.append({"name": "POSTGRES_PASSWORD", "value": "hunter2"})
    find(objects, "ConfigMap", "clinops-config")["data"]["AWS_SECRET_ACCESS_KEY"] = "x"
    assert sorted(policy.plaintext_secrets(objects)) == [
        "ConfigMap/clinops-config: key AWS_SECRET_ACCESS_KEY looks like a credential",
        "Deployment/mlflow spec.template.spec.containers[mlflow]: env POSTGRES_PASSWORD has a literal value"]


def test_no_secret_or_credential_file_is_in_git():
    tracked = subprocess.run(["git", "ls-files", "manifests", "kustomize"], cwd=manifests.REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    assert any(p.endswith(".env.example") for p in tracked)
    assert [p for p in tracked if p.endswith(".env")] == []
    yaml_files = [manifests.REPO / p for p in tracked if p.endswith((".yaml", ".yml"))]
    assert [str(p) for p in yaml_files if "\nkind: Secret" in "\n" + p.read_text()] == []
    ignored = subprocess.run(["git", "check-ignore", "kustomize/overlays/staging/secrets/clinops-s3.env"],
                             cwd=manifests.REPO, capture_output=True, text=True)
    assert ignored.returncode == 0


def test_network_policies_refuse_an_unselected_pod_and_a_missing_default_deny(overlays):
    objects = copy.deepcopy(overlays["staging"])
    find(objects, "StatefulSet", "minio")["spec"]["template"]["metadata"]["labels"] = {"app": "store"}
    objects = [o for o in objects if not (o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "default-deny")]
    assert policy.network_policies(objects) == [
        "no default-deny NetworkPolicy (podSelector {}, policyTypes Ingress and Egress, no rules)",
        "StatefulSet/minio spec.template.spec: no NetworkPolicy selects its pods (labels {'app': 'store'})"]


def test_network_policy_selectors_follow_kubernetes_semantics():
    labels = {"clinops.io/workload": "pneumonia", "ray.io/node-type": "worker"}
    assert policy._matches({"matchExpressions": [{"key": "clinops.io/workload", "operator": "Exists"},
                                                 {"key": "clinops.io/component", "operator": "DoesNotExist"}]}, labels)
    assert not policy._matches({"matchLabels": {"clinops.io/workload": "heart-disease"}}, labels)
    assert not policy._matches({"matchExpressions": [{"key": "ray.io/node-type", "operator": "NotIn",
                                                      "values": ["worker"]}]}, labels)


def rbac_violations(objects: list[dict]) -> list[str]:
    out = [f"{policy.name(o)}: cluster-wide" for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for role in (o for o in objects if o["kind"] == "Role"):
        for rule in role["rules"]:
            if "*" in rule.get("verbs", []) + rule.get("resources", []) + rule.get("apiGroups", []):
                out.append(f"{policy.name(role)}: wildcard in {rule}")
            if "secrets" in rule.get("resources", []):
                out.append(f"{policy.name(role)}: reads secrets")
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pipeline_runner_has_exactly_what_its_steps_use_in_its_namespace(overlays, overlay):
    objects = overlays[overlay]
    assert rbac_violations(objects) == []
    rules = {(g, r): set(rule["verbs"]) for rule in find(objects, "Role", "clinops-pipeline-runner")["rules"]
             for g in rule["apiGroups"] for r in rule["resources"]}
    assert rules == {
        ("ray.io", "rayjobs"): {"create", "get", "list", "watch", "delete"},  # components/pneumonia/rayjob.py
        ("serving.kserve.io", "inferenceservices"): {"create", "get", "list", "watch", "patch"},  # deploy step
        ("", "pods"): {"get", "list"}, ("", "pods/log"): {"get", "list"},  # the submitter's logs
        ("coordination.k8s.io", "leases"): {"get", "create", "update"}}  # the registry lock
    binding = find(objects, "RoleBinding", "clinops-pipeline-runner")
    namespace = binding["metadata"]["namespace"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": namespace}]


def test_rbac_check_refuses_wildcards_secrets_and_cluster_roles():
    role = {"kind": "Role", "metadata": {"name": "r"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}]}
    assert rbac_violations([role, {"kind": "ClusterRole", "metadata": {"name": "c"}}]) == [
        "ClusterRole/c: cluster-wide",
        "Role/r: wildcard in {'apiGroups': [''], 'resources': ['secrets'], 'verbs': ['*']}",
        "Role/r: reads secrets"]
