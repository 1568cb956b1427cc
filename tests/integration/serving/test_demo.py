import pytest

from pipelines.demo import run_demo

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_demo_serves_examples_for_every_bundle_and_stops(bundles):
    summary = run_demo({k: str(v) for k, v in bundles.items()})
    assert summary["status"] == "succeeded"
    heart = summary["workloads"]["heart-disease"]
    assert len(heart["examples"]) == 3 and heart["rejected_example"]["status"] == 400
    assert all(0 <= e["probability"] <= 1 and e["risk_level"] in {"Low", "Medium", "High"} for e in heart["examples"])
    pneumonia = summary["workloads"]["pneumonia"]
    assert [e["label"] in {"NORMAL", "PNEUMONIA"} for e in pneumonia["examples"]] == [True] * 3
    # the drift part: four windows per workload, each through the transformer to the sidecar and tested
    for name in ("heart-disease", "pneumonia"):
        drift = summary["workloads"][name]["drift"]
        assert drift["complete"] and len(drift["windows"]) == 4, drift
        assert drift["flagged_shifted"] == 2  # the sample bundles' references are synthetic: shifted is far off
