"""Instant queries against the Prometheus HTTP API (``GET /api/v1/query``), and the canary's queries.

The defaults read what clinops' own serving processes export at ``/metrics`` (``inference/metrics.py``):
``clinops_requests_total`` by ``status`` and the ``clinops_stage_latency_seconds`` histogram, both
scraped by the ``clinops-serving`` PodMonitor (``manifests/monitoring/monitors.yaml``) on the serving
container's port, which the ``serving`` NetworkPolicy opens to the monitoring namespace. The series are
told apart by ``namespace`` (the operator's target label) and ``revision``, which the PodMonitor copies
from the ``serving.knative.dev/revision`` label Knative puts on each revision's pods: so the canary
revision is judged on its own pods' numbers. ``tests/manifests/test_canary_metrics.py`` ties these
queries to what the overlays scrape and let through. Requests that never reach the process (a
queue-proxy timeout, a crashed container) are not counted; the readiness wait before the first look
and the restart alert cover those. A cluster that labels its series otherwise sets the templates."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from components.deploy.decision import CanarySample

NAMESPACE_LABEL = "namespace"  # the Prometheus operator's target label: the pod's namespace
REVISION_LABEL = "revision"  # the PodMonitor's relabeling of the pod label serving.knative.dev/revision
SELECTOR = NAMESPACE_LABEL + '="{namespace}",' + REVISION_LABEL + '="{revision}"'
# no 5xx series yet is an error rate of 0 while requests were served (and no data when none were)
ERROR_RATE = ('(sum(rate(clinops_requests_total{{' + SELECTOR + ',status=~"5.."}}[{window}])) or vector(0))'
              ' / sum(rate(clinops_requests_total{{' + SELECTOR + '}}[{window}]))')
# the slowest stage's p99, as the ClinopsHighLatencyP99 alert judges a serving process
P99_LATENCY_S = ('max(histogram_quantile(0.99, sum by (stage, le) (rate(clinops_stage_latency_seconds_bucket{{'
                 + SELECTOR + '}}[{window}]))))')
REQUESTS = 'sum(increase(clinops_requests_total{{' + SELECTOR + '}}[{window}]))'


class PrometheusError(RuntimeError):
    """Prometheus could not be asked, or answered with an error."""


@dataclass(frozen=True)
class CanaryQueries:
    """PromQL templates; ``{namespace}``, ``{revision}`` and ``{window}`` are filled in."""

    error_rate: str = ERROR_RATE
    p99_latency_s: str = P99_LATENCY_S
    requests: str = REQUESTS


class Prometheus:
    def __init__(self, url: str, timeout_s: float = 10.0):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Prometheus URL {url!r}: an http:// or https:// URL is needed")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, promql: str) -> float | None:
        """The value of an instant query that yields one number; None when it yields nothing or NaN."""
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(address, timeout=self.timeout_s) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:300]
            raise PrometheusError(f"Prometheus answered {err.code} to {promql!r}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as err:
            raise PrometheusError(f"Prometheus at {self.url} could not be queried: {err}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"Prometheus refused {promql!r}: {body.get('error', body)}")
        data = body.get("data", {})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            value = result[1]
        elif kind == "vector":
            if not result:
                return None
            if len(result) > 1:
                raise PrometheusError(f"{promql!r} gave {len(result)} series; one number is needed")
            value = result[0]["value"][1]
        else:
            raise PrometheusError(f"{promql!r} gave a {kind}; an instant vector or scalar is needed")
        number = float(value)
        return None if math.isnan(number) else number

    def canary_sample(self, namespace: str, revision: str, window: str,
                      queries: CanaryQueries = CanaryQueries()) -> CanarySample:
        fill = {"namespace": namespace, "revision": revision, "window": window}
        requests = self.query(queries.requests.format(**fill))
        return CanarySample(error_rate=self.query(queries.error_rate.format(**fill)),
                            p99_latency_s=self.query(queries.p99_latency_s.format(**fill)),
                            requests=requests or 0.0)
