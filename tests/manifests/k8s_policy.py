"""Policy over rendered Kubernetes objects: each check returns ``Kind/name: what is wrong`` lines
(empty: compliant). Containers are found wherever this project's objects hold them: workload pod
templates, KServe InferenceService predictors / transformers, ServingRuntimes and RayJob groups."""

from __future__ import annotations

import re
from collections.abc import Iterator

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY", re.I)


def name(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def pods(obj: dict) -> Iterator[tuple[str, dict, dict]]:
    """(where, pod-level spec, pod labels) of every pod an object makes."""
    kind, spec = obj.get("kind"), obj.get("spec", {})
    if kind in WORKLOADS:
        template = spec.get("template", {})
        yield "spec.template.spec", template.get("spec", {}), template.get("metadata", {}).get("labels", {})
    elif kind == "CronJob":
        template = spec.get("jobTemplate", {}).get("spec", {}).get("template", {})
        yield "spec.jobTemplate", template.get("spec", {}), template.get("metadata", {}).get("labels", {})
    elif kind == "Pod":
        yield "spec", spec, obj.get("metadata", {}).get("labels", {})
    elif kind == "InferenceService":
        for part in ("predictor", "transformer", "explainer"):
            if part in spec:
                yield f"spec.{part}", spec[part], spec[part].get("labels", {})
    elif kind == "RayJob":
        cluster = spec.get("rayClusterSpec", {})
        groups = [("head", cluster.get("headGroupSpec", {}))] + [(g.get("groupName"), g) for g in cluster.get("workerGroupSpecs", [])]
        for group, g in groups:
            template = g.get("template", {})
            yield f"rayClusterSpec.{group}", template.get("spec", {}), template.get("metadata", {}).get("labels", {})


def containers(obj: dict) -> Iterator[tuple[str, dict, dict]]:
    """(where, container, pod-level spec) of every container an object defines."""
    if obj.get("kind") == "ServingRuntime":
        for c in obj.get("spec", {}).get("containers", []):
            yield f"spec.containers[{c.get('name')}]", c, obj["spec"]
        return
    for where, pod, _labels in pods(obj):
        for key in ("initContainers", "containers"):
            for c in pod.get(key, []):
                yield f"{where}.{key}[{c.get('name')}]", c, pod
        if "model" in pod:  # KServe merges it into its ServingRuntime's kserve-container
            yield f"{where}.model", pod["model"], pod


def _runtime_container(objects: list[dict], runtime: str | None) -> dict:
    for obj in objects:
        if obj.get("kind") == "ServingRuntime" and obj["metadata"]["name"] == runtime:
            return next((c for c in obj["spec"]["containers"] if c.get("name") == "kserve-container"), {})
    return {}


def hardening(objects: list[dict]) -> list[str]:
    """Non-root, read-only root filesystem, no privilege escalation, all capabilities dropped,
    seccomp RuntimeDefault, CPU and memory requests and limits: on every container."""
    out = []
    for obj in objects:
        for where, c, pod in containers(obj):
            sc = dict(c.get("securityContext") or {})
            if where.endswith(".model"):  # settings the ServingRuntime's container gives the merged one
                base = _runtime_container(objects, c.get("runtime"))
                sc = {**(base.get("securityContext") or {}), **sc}
            pod_sc = pod.get("securityContext") or {}
            label = f"{name(obj)} {where}"
            if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
                out.append(f"{label}: runAsNonRoot is not true")
            if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
                out.append(f"{label}: runs as UID 0")
            if sc.get("readOnlyRootFilesystem") is not True:
                out.append(f"{label}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                out.append(f"{label}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                out.append(f"{label}: privileged")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                out.append(f"{label}: capabilities do not drop ALL")
            if (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
                out.append(f"{label}: seccompProfile is not RuntimeDefault")
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                for what in ("cpu", "memory"):
                    if what not in (res.get(kind) or {}):
                        out.append(f"{label}: no {what} {kind}")
    return out


def images(objects: list[dict]) -> list[str]:
    """Every image pinned to a tag other than latest, or to a digest."""
    out = []
    for obj in objects:
        for where, c, _pod in containers(obj):
            image = c.get("image")
            if image is None:
                continue  # a KServe model takes its ServingRuntime's image
            last = image.rsplit("/", 1)[-1]
            if "@sha256:" in image:
                continue
            if ":" not in last:
                out.append(f"{name(obj)} {where}: image {image} has no tag")
            elif last.rsplit(":", 1)[1] == "latest":
                out.append(f"{name(obj)} {where}: image {image} is latest")
    return out


def plaintext_secrets(objects: list[dict]) -> list[str]:
    """No credential as a literal value: env vars named like a secret come from a Secret, and no
    ConfigMap holds a key named like one."""
    out = []
    for obj in objects:
        for where, c, _pod in containers(obj):
            for env in c.get("env") or []:
                if SECRET_NAME.search(env.get("name", "")) and "value" in env:
                    out.append(f"{name(obj)} {where}: env {env['name']} has a literal value")
        if obj.get("kind") == "ConfigMap":
            out += [f"{name(obj)}: key {k} looks like a credential" for k in obj.get("data") or {} if SECRET_NAME.search(k)]
    return out


def _matches(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def network_policies(objects: list[dict]) -> list[str]:
    """A default-deny NetworkPolicy (every pod, ingress and egress, no rules) and, for every pod,
    a policy that selects it by its labels (the paths it may use)."""
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    out = []
    deny = [p for p in policies if p["spec"].get("podSelector") == {} and not p["spec"].get("ingress")
            and not p["spec"].get("egress") and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}]
    if not deny:
        out.append("no default-deny NetworkPolicy (podSelector {}, policyTypes Ingress and Egress, no rules)")
    specific = [p for p in policies if p["spec"].get("podSelector")]
    for obj in objects:
        for where, _pod, labels in pods(obj):
            if not any(_matches(p["spec"]["podSelector"], labels) for p in specific):
                out.append(f"{name(obj)} {where}: no NetworkPolicy selects its pods (labels {labels})")
    return out
