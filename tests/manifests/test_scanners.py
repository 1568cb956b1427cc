"""The recognised tools over what we ship: checkov (in its own environment, .venv-tools) over the
rendered overlays, and promtool over the alert rules with their unit tests. `make test` and
`make manifests` install both first (`make tools`); missing, the tests fail and say how to get them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from support.manifests import OVERLAYS, find

from pipelines import manifests

pytestmark = pytest.mark.unit
REPO = manifests.REPO
MONITORING = REPO / "manifests" / "monitoring"
CHECKOV = Path(os.environ.get("CLINOPS_CHECKOV", REPO / ".venv-tools" / "bin" / "checkov"))
# the checks we skip, each with its reason on the object (checkov.io/skipN annotations)
EXPECTED_SKIPS = {"CKV_K8S_43", "CKV_K8S_35"}
# a pod every scanner must object to: it proves the scan looks at what it is given
BAD_POD = """apiVersion: v1
kind: Pod
metadata: {name: careless, namespace: scratch}
spec:
  containers:
    - name: c
      image: busybox:latest
      securityContext: {privileged: true}
"""


def _tool(path: Path | str | None, name: str) -> str:
    if not path or not Path(path).exists():
        pytest.fail(f"{name} is missing: run `make tools` (it installs checkov into .venv-tools and promtool "
                    "from the Debian package prometheus)")
    return str(path)


@pytest.fixture(scope="module")
def checkov_report(overlays, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("rendered")
    for name in OVERLAYS:
        (folder / f"{name}.yaml").write_text(yaml.safe_dump_all(overlays[name], sort_keys=False))
    (folder / "bad.yaml").write_text(BAD_POD)
    result = subprocess.run([_tool(CHECKOV, "checkov"), "-d", str(folder), "--framework", "kubernetes",
                             "-o", "json", "--skip-download"], capture_output=True, text=True, timeout=300)
    return json.loads(result.stdout)


def test_checkov_finds_nothing_in_the_overlays(checkov_report):
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']})" for c in checkov_report["results"]["failed_checks"]
              if c["file_path"] != "/bad.yaml"]
    assert failed == []
    passed = [c for c in checkov_report["results"]["passed_checks"] if c["file_path"] != "/bad.yaml"]
    assert len(passed) > 500


def test_checkov_skips_are_the_recorded_ones_each_with_a_reason(checkov_report):
    skipped = checkov_report["results"]["skipped_checks"]
    assert {c["check_id"] for c in skipped} == EXPECTED_SKIPS
    assert all(len(c["check_result"].get("suppress_comment", "")) > 20 for c in skipped)
    assert {c["resource"].rsplit(".", 1)[-1] for c in skipped} == {"minio", "mlflow", "mlflow-postgres"}


def test_checkov_does_object_to_a_careless_pod(checkov_report):
    failed = {c["check_id"] for c in checkov_report["results"]["failed_checks"] if c["file_path"] == "/bad.yaml"}
    assert {"CKV_K8S_16", "CKV_K8S_14", "CKV_K8S_20", "CKV_K8S_22"} <= failed  # privileged, latest, escalation, rw root


def _promtool() -> str:
    return _tool(shutil.which("promtool"), "promtool")


def test_promtool_checks_the_rules():
    result = subprocess.run([_promtool(), "check", "rules", "clinops-rules.yaml"], cwd=MONITORING,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_promtool_alert_unit_tests_pass():
    result = subprocess.run([_promtool(), "test", "rules", "clinops-rules.test.yaml"], cwd=MONITORING,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {t["alertname"] for case in yaml.safe_load((MONITORING / "clinops-rules.test.yaml").read_text())["tests"]
              for t in case["alert_rule_test"]}
    rules = yaml.safe_load((MONITORING / "clinops-rules.yaml").read_text())
    assert tested == {r["alert"] for g in rules["groups"] for r in g["rules"]}


def test_promtool_alert_tests_can_fail(tmp_path):
    rules = (MONITORING / "clinops-rules.yaml").read_text().replace("> 0.05", "> 0.5")
    (tmp_path / "clinops-rules.yaml").write_text(rules)
    shutil.copy(MONITORING / "clinops-rules.test.yaml", tmp_path)
    result = subprocess.run([_promtool(), "test", "rules", "clinops-rules.test.yaml"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "alertname: ClinopsHighErrorRate" in result.stdout + result.stderr


def test_prometheus_rule_object_carries_the_tested_rules(rendered):
    rule = find(rendered["manifests/monitoring"], "PrometheusRule", "clinops")
    assert rule["spec"] == yaml.safe_load((MONITORING / "clinops-rules.yaml").read_text())


def test_rules_and_dashboard_use_metrics_our_processes_export(rendered):
    source = (REPO / "inference" / "metrics.py").read_text() + (REPO / "inference" / "drift" / "metrics.py").read_text()
    exported = set(re.findall(r'(?:Counter|Gauge|Histogram)\(\s*"(clinops_[a-z_]+)"', source))
    counters = set(re.findall(r'Counter\(\s*"(clinops_[a-z_]+)"', source))
    series = exported | {f"{c}_total" for c in counters} | {f"{h}_bucket" for h in exported - counters}
    text = (MONITORING / "clinops-rules.yaml").read_text()
    text += find(rendered["manifests/monitoring"], "ConfigMap", "clinops-grafana-dashboard")["data"]["clinops-dashboard.json"]
    used = set(re.findall(r"\b(clinops_[a-z_]+)\b", text))
    assert {"clinops_requests_total", "clinops_stage_latency_seconds_bucket", "clinops_drift_is_drift",
            "clinops_drift_events_rejected_total", "clinops_drift_p_value", "clinops_predictions_total"} <= used
    assert used - series == set()
