"""The deploy step behind the KFP component (``run_deploy``, like ``gate.run_gate`` behind ``gate``): which
way to deploy, and the decision recorded in MLflow tags on the version.

Tags on the model version (history, like the gate's): ``deploy`` (created, unchanged, replaced, promote,
rollback, restarted, skipped, failed), ``deploy_reasons``, ``deploy_target`` (``namespace/name`` or ``local``),
``deploy_at`` (ISO time, UTC), ``deploy_bundle`` and, for a canary, ``deploy_canary_percent``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from components.deploy.decision import CanaryPolicy

MODES = ("off", "auto", "cluster", "local")
DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"  # the Prometheus operator's service
DEFAULT_LIMITS = "error_rate=0.05,p99_latency_s=1.0,min_requests=20"
SKIPPED = "skipped"


@dataclass(frozen=True)
class DeployRequest:
    """What the pipeline passes the step."""

    workload: str
    mode: str = "auto"  # auto: cluster inside a pod, else the local stack
    namespace: str = ""  # "" = the pod's own namespace
    isvc_name: str = ""  # "" = the workload's name
    canary_percent: int = 10
    period_s: float = 600.0
    interval_s: float = 60.0
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    policy: CanaryPolicy = field(default_factory=CanaryPolicy)
    image_registry: str = ""  # "" = the settings' (CLINOPS_IMAGE_REGISTRY, baked into the component image)
    image_tag: str = ""  # "" = the settings' (CLINOPS_IMAGE_TAG)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"deploy mode {self.mode!r}; known: {', '.join(MODES)}")


def parse_limits(text: str) -> CanaryPolicy:
    """``"error_rate=0.05, p99_latency_s=1.0, min_requests=20"`` (any subset) → a :class:`CanaryPolicy`."""
    names = {"error_rate": "max_error_rate", "p99_latency_s": "max_p99_latency_s", "min_requests": "min_requests"}
    values = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in names:
            raise ValueError(f"canary limit {key!r}: unknown; known: {', '.join(names)}")
        try:
            values[names[key]] = float(value)
        except ValueError:
            raise ValueError(f"canary limit {key!r}: {value.strip()!r} is not a number") from None
    return CanaryPolicy(**values)


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def pod_namespace() -> str:
    from components.common.locks import SERVICE_ACCOUNT_NAMESPACE

    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        return "default"


def deploy_cluster(request: DeployRequest, bundle_uri: str, client=None, prometheus=None, **kwargs) -> dict:
    from components.common.settings import get_settings
    from components.deploy import bootstrap, canary
    from components.deploy.prometheus import Prometheus

    if client is None:
        from kserve import KServeClient

        client = KServeClient()  # in a pod: the service account's in-cluster configuration
    prometheus = prometheus or Prometheus(request.prometheus_url)
    namespace = request.namespace or pod_namespace()
    name = request.isvc_name or request.workload
    settings = canary.RolloutSettings(namespace, name, request.canary_percent, request.period_s,
                                      request.interval_s, policy=request.policy)
    registry = request.image_registry or get_settings().image_registry
    tag = request.image_tag or get_settings().image_tag
    rollout = canary.roll_out(client, prometheus, bundle_uri,
                              lambda: bootstrap.build(name, namespace, request.workload, bundle_uri, registry, tag),
                              settings, **kwargs)
    return rollout.record() | {"target": f"{namespace}/{name}", "canary_percent": request.canary_percent}


def deploy_local(request: DeployRequest, bundle_uri: str, home: Path, timeout_s: float = 180.0) -> dict:
    from components.deploy import local

    return local.restart(home, request.workload, bundle_uri, timeout_s).record() | {"target": "local"}


def tags(outcome: dict) -> dict[str, str]:
    found = {"deploy": outcome["action"], "deploy_reasons": "; ".join(outcome["reasons"]),
             "deploy_target": outcome.get("target", ""), "deploy_bundle": outcome.get("bundle_uri")
             or outcome.get("storage_uri", ""),
             "deploy_at": datetime.now(UTC).isoformat(timespec="seconds")}
    if outcome["action"] not in ("created", "unchanged", "replaced", "restarted", SKIPPED, "failed"):
        found["deploy_canary_percent"] = str(outcome.get("canary_percent", ""))
    return found


def run_deploy(request: DeployRequest, export_record: dict, home: Path | None = None, record=None,
               **cluster_kwargs) -> dict:
    """Deploy the exported bundle if its version was promoted, and tag the version with the outcome.
    ``record(model_name, version, tags)`` defaults to the MLflow registry."""
    model_name, version = export_record["model_name"], str(export_record["model_version"])
    bundle_uri = export_record["bundle_uri"]
    if request.mode == "off":
        return {"action": SKIPPED, "reasons": ["deploy is off"], "target": "", "bundle_uri": bundle_uri}
    if not export_record.get("promoted"):
        outcome = {"action": SKIPPED, "reasons": [f"version {version} was not promoted: the champion stays"],
                   "target": "", "bundle_uri": bundle_uri}
    elif request.mode == "cluster" or (request.mode == "auto" and in_cluster()):
        outcome = deploy_cluster(request, bundle_uri, **cluster_kwargs)
    else:
        if home is None:
            from components.common.settings import get_settings

            home = get_settings().home
        outcome = deploy_local(request, bundle_uri, home)
    if record is None:
        from components.common import registry

        registry.connect()
        record = registry.tag_version
    record(model_name, version, tags(outcome))
    return outcome


def summary(outcome: dict) -> str:
    return json.dumps(outcome, sort_keys=True)
