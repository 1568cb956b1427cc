"""Instant queries against the Prometheus HTTP API (``GET /api/v1/query``), and the canary's queries.

The defaults read Knative's queue-proxy metrics, which exist for every revision of a serverless
InferenceService (canary rollout is a serverless feature): ``revision_request_count`` by
``response_code_class`` and the ``revision_request_latencies`` histogram (milliseconds), labelled with
``namespace_name`` and ``revision_name``. A cluster that labels them otherwise sets the templates."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from components.deploy.decision import CanarySample

SELECTOR = 'namespace_name="{namespace}",revision_name="{revision}"'
ERROR_RATE = ('sum(rate(revision_request_count{{' + SELECTOR + ',response_code_class="5xx"}}[{window}]))'
              ' / sum(rate(revision_request_count{{' + SELECTOR + '}}[{window}]))')
P99_LATENCY_S = ('histogram_quantile(0.99, sum by (le) (rate(revision_request_latencies_bucket{{' + SELECTOR
                 + '}}[{window}]))) / 1000')
REQUESTS = 'sum(increase(revision_request_count{{' + SELECTOR + '}}[{window}]))'


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
