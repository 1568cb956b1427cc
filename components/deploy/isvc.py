"""The InferenceService a champion is rolled out to, and the patches of a canary rollout, as pure functions
of the object the cluster holds. The InferenceService normally comes from kustomize (``manifests/``);
:mod:`components.deploy.bootstrap` builds the same object for a namespace that has none yet.

Patches are JSON merge patches (what ``KServeClient.patch`` sends), so a list is replaced whole: the
transformer's containers are sent back complete, with only their ``STORAGE_URI`` changed."""

from __future__ import annotations

import copy

STORAGE_URI_ENV = "STORAGE_URI"  # KServe's storage initializer fetches it into /mnt/models of a custom container
MODEL_DIR = "/mnt/models"
MODEL_FORMATS = {"heart-disease": "sklearn", "pneumonia": "pytorch"}
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
RAW_MODES = {"RawDeployment", "Standard"}


def storage_uri(current: dict) -> str | None:
    """The bundle the predictor serves now."""
    return current.get("spec", {}).get("predictor", {}).get("model", {}).get("storageUri")


def _with_storage_uri(containers: list[dict], uri: str) -> list[dict]:
    containers = copy.deepcopy(containers)
    for container in containers:
        for env in container.get("env", []):
            if env.get("name") == STORAGE_URI_ENV:
                env["value"] = uri
    return containers


def deployment_mode(current: dict) -> str | None:
    """How KServe runs the service: the mode its status reports, else the one its annotation asks for."""
    return (current.get("status", {}).get("deploymentMode")
            or (current.get("metadata", {}).get("annotations") or {}).get(DEPLOYMENT_MODE_ANNOTATION))


def is_raw(current: dict) -> bool:
    """Served by plain Deployments (KServe's RawDeployment, called Standard from 0.15 on): a spec change
    replaces the pods in place, with no revisions to split traffic between, so no canary."""
    return deployment_mode(current) in RAW_MODES


def rollout_patch(current: dict, uri: str, canary_percent: int | None) -> dict:
    """Serve ``uri`` from a new revision of each component that reads the bundle, taking ``canary_percent``
    of the traffic; the previous revision keeps the rest. ``None``: no traffic split (RawDeployment), the
    components simply serve ``uri``."""
    if canary_percent is not None and not 0 < canary_percent <= 100:
        raise ValueError(f"canary percent {canary_percent}: between 1 and 100")
    spec = current.get("spec", {})
    if "model" not in spec.get("predictor", {}):
        raise ValueError(f"InferenceService {current.get('metadata', {}).get('name')!r} has no predictor.model "
                         "to point at the new bundle")
    split = {} if canary_percent is None else {"canaryTrafficPercent": canary_percent}
    patch = {"spec": {"predictor": {"model": {"storageUri": uri}, **split}}}
    containers = spec.get("transformer", {}).get("containers")
    if containers and any(e.get("name") == STORAGE_URI_ENV for c in containers for e in c.get("env", [])):
        patch["spec"]["transformer"] = {"containers": _with_storage_uri(containers, uri), **split}
    return patch


def traffic_patch(rollout: dict, percent: int) -> dict:
    """All traffic to the new revisions (100: promote) or back to the previous ones (0: roll back), on the
    components that ``rollout`` changed."""
    return {"spec": {component: {"canaryTrafficPercent": percent} for component in rollout["spec"]}}


def canary_revision(current: dict, rolled: dict | None = None) -> str | None:
    """The newest revision of the component clients reach first (the transformer when there is one) among
    those the rollout patch ``rolled`` changed: the one whose metrics judge the canary. A transformer the
    patch left alone has no new revision; its latest is the one serving everyone."""
    components = current.get("status", {}).get("components", {})
    changed = ("transformer", "predictor") if rolled is None else tuple(rolled.get("spec", {}))
    for component in ("transformer", "predictor"):
        revision = components.get(component, {}).get("latestCreatedRevision")
        if component in changed and revision:
            return revision
    return None
