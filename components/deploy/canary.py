"""A canary rollout of a new champion to its InferenceService, through the KServe client: create the service
if the namespace has none (all traffic to the first revision); point a RawDeployment one (no revisions to
split traffic between) at the new bundle and wait for Ready; else patch it to the new bundle with a canary
share, wait for Ready, sample the canary's metrics in Prometheus for the observation period, and promote
(all traffic) or roll back (all traffic to the previous revision) on :func:`decision.decide`'s verdict.
The client and Prometheus are parameters: tests pass fakes of both."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from components.deploy import isvc
from components.deploy.decision import (
    PROMOTE,
    ROLLBACK,
    CanaryDecision,
    CanaryPolicy,
    CanarySample,
    breaches,
    decide,
)
from components.deploy.prometheus import CanaryQueries, PrometheusError

CREATED = "created"
UNCHANGED = "unchanged"
REPLACED = "replaced"  # RawDeployment: the new bundle took all traffic at once (no revisions, no canary)


@dataclass(frozen=True)
class RolloutSettings:
    namespace: str
    name: str
    canary_percent: int = 10
    period_s: float = 600.0  # how long the canary is watched before it is promoted
    interval_s: float = 60.0  # between two looks at its metrics
    window: str = "1m"  # the PromQL range of each look
    ready_timeout_s: int = 600
    policy: CanaryPolicy = field(default_factory=CanaryPolicy)
    queries: CanaryQueries = field(default_factory=CanaryQueries)

    def __post_init__(self):
        if not 0 < self.canary_percent < 100:
            raise ValueError(f"canary percent {self.canary_percent}: between 1 and 99 (100 is no canary)")
        if self.period_s < 0 or self.interval_s <= 0:
            raise ValueError(f"period {self.period_s} s / interval {self.interval_s} s: need period >= 0 < interval")


@dataclass
class Rollout:
    action: str  # created | unchanged | replaced | promote | rollback
    reasons: list[str]
    storage_uri: str
    previous_uri: str | None = None
    revision: str | None = None
    samples: list[CanarySample] = field(default_factory=list)

    def record(self) -> dict:
        return {"action": self.action, "reasons": self.reasons, "storage_uri": self.storage_uri,
                "previous_uri": self.previous_uri, "revision": self.revision, "samples": len(self.samples)}


def _get(client, name: str, namespace: str) -> dict | None:
    try:
        return client.get(name, namespace=namespace)
    except RuntimeError as err:  # KServeClient wraps the ApiException; its text starts with the status
        if "(404)" in str(err):
            return None
        raise


def _generation(obj) -> int | None:
    """The object's generation after a write: waiting for Ready at it ignores the status of the spec before."""
    return obj.get("metadata", {}).get("generation") if isinstance(obj, dict) else None


def _replace(client, current: dict, storage_uri: str, previous: str | None, settings: RolloutSettings) -> Rollout:
    """A service of plain Deployments: point it at the new bundle (Kubernetes replaces the pods, the old ones
    serving until the new are ready) and, if it does not become Ready, point it back."""
    name, namespace, mode = settings.name, settings.namespace, isvc.deployment_mode(current)
    patched = client.patch(name, isvc.rollout_patch(current, storage_uri, None), namespace=namespace)
    try:
        client.wait_isvc_ready(name, namespace=namespace, timeout_seconds=settings.ready_timeout_s,
                               expected_generation=_generation(patched))
    except RuntimeError as err:
        client.patch(name, isvc.rollout_patch(current, previous, None), namespace=namespace)
        return Rollout(ROLLBACK, [f"{mode}: the new bundle was not Ready within {settings.ready_timeout_s} s ({err}); "
                                  f"pointed back at {previous}"], storage_uri, previous)
    return Rollout(REPLACED, [f"{mode} has no revisions to split traffic between, so no canary: the new bundle "
                              "serves all traffic since it became Ready"], storage_uri, previous)


def roll_out(client, prometheus, storage_uri: str, build: Callable[[], object], settings: RolloutSettings,
             sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> Rollout:
    """Deploy ``storage_uri``; ``build`` makes the InferenceService when there is none."""
    name, namespace = settings.name, settings.namespace
    current = _get(client, name, namespace)
    if current is None:
        created = client.create(build(), namespace=namespace)
        client.wait_isvc_ready(name, namespace=namespace, timeout_seconds=settings.ready_timeout_s,
                               expected_generation=_generation(created))
        return Rollout(CREATED, [f"no InferenceService {namespace}/{name} before: created, all traffic to it"],
                       storage_uri)
    previous = isvc.storage_uri(current)
    if previous == storage_uri:
        return Rollout(UNCHANGED, [f"{namespace}/{name} already serves {storage_uri}"], storage_uri, previous)

    if isvc.is_raw(current):
        return _replace(client, current, storage_uri, previous, settings)

    patch = isvc.rollout_patch(current, storage_uri, settings.canary_percent)
    patched = client.patch(name, patch, namespace=namespace)
    try:
        client.wait_isvc_ready(name, namespace=namespace, timeout_seconds=settings.ready_timeout_s,
                               expected_generation=_generation(patched))
    except RuntimeError as err:
        client.patch(name, isvc.traffic_patch(patch, 0), namespace=namespace)
        return Rollout(ROLLBACK, [f"the canary was not Ready within {settings.ready_timeout_s} s: {err}"],
                       storage_uri, previous)
    revision = isvc.canary_revision(client.get(name, namespace=namespace), patch)
    if revision is None:
        client.patch(name, isvc.traffic_patch(patch, 0), namespace=namespace)
        return Rollout(ROLLBACK, ["the InferenceService status names no canary revision to watch"],
                       storage_uri, previous)

    samples: list[CanarySample] = []
    deadline = clock() + settings.period_s
    while True:
        sleep(min(settings.interval_s, max(0.0, deadline - clock())))
        try:
            sample = prometheus.canary_sample(namespace, revision, settings.window, settings.queries)
        except PrometheusError as err:  # no way to judge the canary: the previous revision takes all traffic
            client.patch(name, isvc.traffic_patch(patch, 0), namespace=namespace)
            return Rollout(ROLLBACK, [f"the canary's metrics could not be read: {err}"], storage_uri, previous,
                           revision, samples)
        samples.append(sample)
        if breaches(sample, settings.policy) or clock() >= deadline:
            break
    verdict: CanaryDecision = decide(samples, settings.policy)
    final = client.patch(name, isvc.traffic_patch(patch, 100 if verdict.promote else 0), namespace=namespace)
    if verdict.promote:
        client.wait_isvc_ready(name, namespace=namespace, timeout_seconds=settings.ready_timeout_s,
                               expected_generation=_generation(final))
    return Rollout(PROMOTE if verdict.promote else ROLLBACK, verdict.reasons, storage_uri, previous, revision,
                   samples)
