"""The canary verdict reads only what the overlays make exist: every series its queries select is one our
serving processes export, every label they select by is one the PodMonitor gives the series, the pods judged
are scraped on the port their process serves ``/metrics`` on, and the NetworkPolicies let Prometheus reach
that port and the deploy step reach Prometheus. Then the queries run in promtool over series labelled as
that scrape labels them, and pick the canary revision's numbers out of its neighbours'."""

from __future__ import annotations

import re
import shutil
import subprocess
from urllib.parse import urlparse

import pytest
import yaml
from k8s_policy import _matches
from support.manifests import OVERLAYS, find

from components.deploy import isvc, prometheus
from components.deploy.step import DEFAULT_PROMETHEUS_URL

pytestmark = pytest.mark.unit

KNATIVE_REVISION = "__meta_kubernetes_pod_label_serving_knative_dev_revision"  # pod label serving.knative.dev/revision
KNATIVE_PORT = "user-port"  # Knative renames the serving container's port to this
NAMESPACE_KEY = "kubernetes.io/metadata.name"
FILL = {"namespace": "NS", "revision": "REV", "window": "1m"}
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def selections(queries: prometheus.CanaryQueries = prometheus.CanaryQueries()) -> list[tuple[str, dict[str, str]]]:
    """(series name, {label: value}) of every selector in the filled-in canary queries."""
    found = []
    for template in (queries.error_rate, queries.p99_latency_s, queries.requests):
        for metric, body in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", template.format(**FILL)):
            found.append((metric, {label: value for label, _op, value in MATCHER.findall(body)}))
    return found


def exported_series() -> dict[str, set[str]]:
    """Series name -> label names, of every metric the serving processes register (inference/metrics.py)."""
    from prometheus_client.metrics import MetricWrapperBase

    from inference import metrics

    series = {}
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            labels = set(metric._labelnames)
            if metric._type == "counter":
                series[f"{metric._name}_total"] = labels
            elif metric._type == "histogram":
                series |= {f"{metric._name}_bucket": labels | {"le"}, f"{metric._name}_count": labels,
                           f"{metric._name}_sum": labels}
            else:
                series[metric._name] = labels
    return series


def canary_overlays(overlays) -> list[str]:
    return [o for o in OVERLAYS if any("canaryTrafficPercent" in obj["spec"].get("predictor", {})
                                       for obj in overlays[o] if obj["kind"] == "InferenceService")]


def judged_pods(objects: list[dict], workload: str) -> tuple[str, dict, dict]:
    """(component, pod labels, serving container) of the component whose new revision judges a rollout."""
    obj = find(objects, "InferenceService", workload)
    changed = isvc.rollout_patch(obj, "s3://models/bundles/x/2", 10)["spec"]
    component = next(c for c in ("transformer", "predictor") if c in changed)  # canary_revision's order
    spec = obj["spec"][component]
    if component == "transformer":
        container = spec["containers"][0]
    else:
        container = find(objects, "ServingRuntime", spec["model"]["runtime"])["spec"]["containers"][0]
    return component, spec.get("labels", {}), container


def lets_in(objects: list[dict], pod_labels: dict, namespace: str, port: int) -> bool:
    """Whether some NetworkPolicy over these pods admits traffic from ``namespace`` to ``port``."""
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        spec = policy["spec"]
        if "Ingress" not in spec.get("policyTypes", []) or not _matches(spec.get("podSelector", {}), pod_labels):
            continue
        for rule in spec.get("ingress") or []:
            peers = rule.get("from")
            from_ns = peers is None or any(
                "podSelector" not in peer and _matches(peer.get("namespaceSelector", {}), {NAMESPACE_KEY: namespace})
                for peer in peers if "namespaceSelector" in peer)
            ports = rule.get("ports")
            if from_ns and (ports is None or any(p.get("port") == port for p in ports)):
                return True
    return False


def lets_out(objects: list[dict], pod_labels: dict, namespace: str, port: int) -> bool:
    """Whether some NetworkPolicy over these pods lets them reach ``port`` in ``namespace``."""
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        spec = policy["spec"]
        if "Egress" not in spec.get("policyTypes", []) or not _matches(spec.get("podSelector", {}), pod_labels):
            continue
        for rule in spec.get("egress") or []:
            peers = rule.get("to")
            to_ns = peers is None or any(
                "podSelector" not in peer and _matches(peer.get("namespaceSelector", {}), {NAMESPACE_KEY: namespace})
                for peer in peers if "namespaceSelector" in peer)
            ports = rule.get("ports")
            if to_ns and (ports is None or any(p.get("port") == port for p in ports)):
                return True
    return False


def test_canary_overlays_carry_the_monitors(overlays):
    assert canary_overlays(overlays) == ["staging", "production"]
    for overlay in canary_overlays(overlays):
        find(overlays[overlay], "PodMonitor", "clinops-serving")


def test_every_series_the_canary_reads_is_exported_with_the_labels_it_selects_by():
    exported = exported_series()
    found = selections()
    assert {metric for metric, _ in found} == {"clinops_requests_total", "clinops_stage_latency_seconds_bucket"}
    for metric, labels in found:
        assert metric in exported, f"{metric}: no serving process exports it"
        scrape_labels = {prometheus.NAMESPACE_LABEL, prometheus.REVISION_LABEL}
        assert set(labels) - scrape_labels <= exported[metric], (metric, labels)
        # the canary is told apart by the scrape's labels, filled in from the rollout
        assert (labels[prometheus.NAMESPACE_LABEL], labels[prometheus.REVISION_LABEL]) == ("NS", "REV")


def test_the_selection_check_sees_a_knative_queue_proxy_metric():
    queue_proxy = prometheus.CanaryQueries(requests='sum(increase(revision_request_count{{namespace_name='
                                                    '"{namespace}",revision_name="{revision}"}}[{window}]))')
    (metric, labels), = [s for s in selections(queue_proxy) if s[0] == "revision_request_count"]
    assert metric not in exported_series() and labels == {"namespace_name": "NS", "revision_name": "REV"}


@pytest.mark.parametrize("workload", ["heart-disease", "pneumonia"])
def test_the_judged_pods_are_scraped_with_their_revision_and_let_through(overlays, workload):
    prometheus_namespace = urlparse(DEFAULT_PROMETHEUS_URL).hostname.split(".")[1]
    assert prometheus_namespace == "monitoring"
    for overlay in canary_overlays(overlays):
        objects = overlays[overlay]
        component, labels, container = judged_pods(objects, workload)
        assert component == "transformer"  # clients reach it first; the rollout gives it a new revision
        (port,) = container["ports"]
        assert f"--http_port={port['containerPort']}" in container["args"]  # /metrics is on the HTTP port

        monitor = find(objects, "PodMonitor", "clinops-serving")["spec"]
        assert _matches(monitor["selector"], labels), f"{overlay}: the PodMonitor does not select {labels}"
        endpoints = {e.get("port"): e for e in monitor["podMetricsEndpoints"]}
        for name in (port["name"], KNATIVE_PORT):  # RawDeployment, Knative
            endpoint = endpoints[name]
            assert endpoint["path"] == "/metrics"
            assert {"action": "replace", "sourceLabels": [KNATIVE_REVISION],
                    "targetLabel": prometheus.REVISION_LABEL} in endpoint["relabelings"]
            # nothing else rewrites the labels the queries select by
            assert [r for r in endpoint["relabelings"] if r.get("targetLabel") in
                    (prometheus.NAMESPACE_LABEL, prometheus.REVISION_LABEL)
                    and r.get("sourceLabels") != [KNATIVE_REVISION]] == []

        assert lets_in(objects, labels, prometheus_namespace, port["containerPort"]), \
            f"{overlay}: Prometheus cannot reach {workload} {component}:{port['containerPort']}"
        step = {"pipelines.kubeflow.org/v2_component": "true"}
        assert lets_out(objects, step, prometheus_namespace, urlparse(DEFAULT_PROMETHEUS_URL).port)


def test_the_policy_check_refuses_a_closed_metrics_port(overlays):
    objects = overlays["staging"]
    _, labels, container = judged_pods(objects, "heart-disease")
    assert lets_in(objects, labels, "monitoring", container["ports"][0]["containerPort"])
    assert not lets_in(objects, labels, "monitoring", 9091)  # Knative's queue-proxy metrics: not let in
    assert not lets_in(objects, labels, "default", container["ports"][0]["containerPort"])


# --- the queries over series labelled as the PodMonitor labels them, in promtool ------------------------

NS, CANARY, PREVIOUS = "clinops-staging", "heart-disease-transformer-00002", "heart-disease-transformer-00001"


def series(name: str, values: str, namespace: str = NS, revision: str = CANARY, **labels) -> dict:
    scrape = {prometheus.NAMESPACE_LABEL: namespace, prometheus.REVISION_LABEL: revision,
              "pod": f"{revision}-deployment-abc", "container": "kserve-container", "endpoint": KNATIVE_PORT}
    text = ",".join(f'{k}="{v}"' for k, v in (scrape | {"model": "heart-disease"} | labels).items())
    return {"series": f"{name}{{{text}}}", "values": values}


def buckets(stage: str, per_step: dict[str, int], **where) -> list[dict]:
    return [series("clinops_stage_latency_seconds_bucket", f"0+{n}x40", stage=stage, le=le, **where)
            for le, n in per_step.items()]


def input_series() -> list[dict]:
    found = [  # the canary: per 15 s, 45 answered 200, 15 answered 500, 15 refused with 400
        series("clinops_requests_total", "0+45x40", status="200"),
        series("clinops_requests_total", "0+15x40", status="500"),
        series("clinops_requests_total", "0+15x40", status="400"),
        # preprocess well under 0.25 s, predict between 0.25 and 0.5 s
        *buckets("preprocess", {"0.25": 75, "0.5": 75, "+Inf": 75}),
        *buckets("predict", {"0.25": 0, "0.5": 75, "+Inf": 75}),
    ]
    for where in ({"revision": PREVIOUS}, {"namespace": "clinops"}):  # neighbours: failing and slow
        found += [series("clinops_requests_total", "0+600x40", status="503", **where),
                  *buckets("predict", {"0.25": 0, "0.5": 0, "+Inf": 600}, **where)]
    # a revision that served only successes
    found.append(series("clinops_requests_total", "0+30x40", revision="heart-disease-transformer-00003",
                        status="200"))
    return found


def close_to(query: str, value: float) -> dict:
    """An expression test that holds when ``query`` is ``value`` (promtool compares floats exactly)."""
    return {"expr": f"abs(({query}) - {value!r}) < bool 1e-9", "eval_time": "10m", "exp_samples": [{"value": 1}]}


def expression_tests(queries: prometheus.CanaryQueries) -> list[dict]:
    def fill(template, revision=CANARY, namespace=NS):
        return template.format(namespace=namespace, revision=revision, window="1m")

    quiet = "heart-disease-transformer-00003"
    absent = "heart-disease-transformer-00009"
    return [
        close_to(fill(queries.error_rate), 15 / 75),  # 400s count as served, not as errors
        close_to(fill(queries.requests), 75 * 4),  # one minute at 75 per 15 s
        close_to(fill(queries.p99_latency_s), 0.25 + 0.25 * 0.99),  # the slower stage, interpolated in its bucket
        close_to(fill(queries.error_rate, quiet), 0.0),  # no 5xx series at all is a rate of 0
        *({"expr": fill(q, absent), "eval_time": "10m", "exp_samples": []}  # no data: None, no verdict from it
          for q in (queries.error_rate, queries.requests, queries.p99_latency_s)),
    ]


def run_promtool(tmp_path, queries: prometheus.CanaryQueries) -> subprocess.CompletedProcess:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: run `make tools` (Debian package prometheus)")
    test = {"rule_files": [], "evaluation_interval": "15s",
            "tests": [{"interval": "15s", "input_series": input_series(),
                       "promql_expr_test": expression_tests(queries)}]}
    (tmp_path / "canary.test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    return subprocess.run([tool, "test", "rules", "canary.test.yaml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)


def test_the_queries_pick_the_canary_revisions_numbers_in_promtool(tmp_path):
    result = run_promtool(tmp_path, prometheus.CanaryQueries())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_refuses_queries_that_ignore_the_revision(tmp_path):
    blind = prometheus.CanaryQueries(error_rate=prometheus.ERROR_RATE.replace(
        ',' + prometheus.REVISION_LABEL + '="{revision}"', ''))
    result = run_promtool(tmp_path, blind)
    assert result.returncode == 1 and "FAILED" in result.stdout + result.stderr
