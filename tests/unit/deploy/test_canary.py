"""The cluster path against a fake KServe API and a fake Prometheus HTTP server: the object built on a first
deploy, the patches of a canary rollout, and the verdict both ways."""

import pytest
from deploy_fakes import FakeKServe, FakePrometheus

from components.deploy import bootstrap, isvc
from components.deploy.canary import RolloutSettings, roll_out
from components.deploy.decision import CanaryPolicy
from components.deploy.prometheus import Prometheus, PrometheusError
from components.deploy.step import DeployRequest, run_deploy

pytestmark = pytest.mark.unit

NS, NAME = "clinical", "heart-disease"
OLD, NEW = "s3://clinops/bundles/heart-disease/3", "s3://clinops/bundles/heart-disease/4"
ERRORS = 'status=~"5.."'  # what the error-rate query alone selects


def existing() -> dict:
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": NAME, "namespace": NS},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": OLD,
                                             "protocolVersion": "v2"}, "minReplicas": 1},
                     "transformer": {"containers": [{"name": "kserve-container", "image": "reg/transformer:1",
                                                     "env": [{"name": "STORAGE_URI", "value": OLD},
                                                             {"name": "LOG_LEVEL", "value": "info"}]}]}}}


class Clock:
    """Time that moves only when the step sleeps."""

    def __init__(self):
        self.now = 0.0

    def sleep(self, seconds):
        self.now += seconds

    def __call__(self):
        return self.now


SETTINGS = RolloutSettings(NS, NAME, canary_percent=20, period_s=300, interval_s=60,
                           policy=CanaryPolicy(max_error_rate=0.05, max_p99_latency_s=1.0, min_requests=20))


def run(kserve, answers, settings=SETTINGS):
    clock = Clock()
    with FakePrometheus(answers) as prometheus:
        rollout = roll_out(kserve, Prometheus(prometheus.url), NEW, lambda: pytest.fail("must not create"),
                           settings, sleep=clock.sleep, clock=clock)
    return rollout, prometheus.queries, clock.now


def test_a_healthy_canary_is_patched_in_watched_for_the_period_and_promoted():
    kserve = FakeKServe(existing())
    rollout, queries, elapsed = run(kserve, {ERRORS: 0.01, "histogram_quantile": 0.25,
                                             "increase(": 120})
    assert rollout.action == "promote" and rollout.previous_uri == OLD and rollout.storage_uri == NEW
    first, last = kserve.patches()
    assert first["spec"]["predictor"] == {"model": {"storageUri": NEW}, "canaryTrafficPercent": 20}
    # the transformer's containers go back whole (merge patch replaces lists), only STORAGE_URI changed
    assert first["spec"]["transformer"]["containers"][0]["env"] == [{"name": "STORAGE_URI", "value": NEW},
                                                                   {"name": "LOG_LEVEL", "value": "info"}]
    assert first["spec"]["transformer"]["canaryTrafficPercent"] == 20
    assert last == {"spec": {"predictor": {"canaryTrafficPercent": 100}, "transformer": {"canaryTrafficPercent": 100}}}
    assert elapsed == 300 and len(rollout.samples) == 5  # every 60 s for the whole period
    # the canary's own revision (the transformer's newest), in this namespace, over the window
    assert rollout.revision == "heart-disease-transformer-00002"
    assert all('namespace="clinical",revision="heart-disease-transformer-00002"' in q for q in queries)
    assert any("[1m]" in q for q in queries)
    stored = kserve.objects[(NS, NAME)]["spec"]
    assert stored["predictor"]["model"]["storageUri"] == NEW and stored["predictor"]["minReplicas"] == 1
    assert [c[0] for c in kserve.calls].count("wait") == 2  # Ready after the patch and after the promotion


def test_an_erroring_canary_is_rolled_back_at_the_first_bad_look():
    kserve = FakeKServe(existing())
    rollout, queries, elapsed = run(kserve, {ERRORS: 0.2, "histogram_quantile": 0.25,
                                             "increase(": 120})
    assert rollout.action == "rollback" and "error rate 20.00% > 5.00%" in rollout.reasons[0]
    assert elapsed == 60 and len(rollout.samples) == 1
    assert kserve.patches()[-1] == {"spec": {"predictor": {"canaryTrafficPercent": 0},
                                             "transformer": {"canaryTrafficPercent": 0}}}


def test_a_rollout_that_leaves_the_transformer_alone_judges_the_predictors_new_revision():
    unpatched = existing()
    unpatched["spec"]["transformer"]["containers"][0]["env"] = [{"name": "LOG_LEVEL", "value": "info"}]
    kserve = FakeKServe(unpatched)
    rollout, queries, _ = run(kserve, {ERRORS: 0.0, "histogram_quantile": 0.25, "increase(": 120})
    assert kserve.patches()[0]["spec"] == {"predictor": {"model": {"storageUri": NEW}, "canaryTrafficPercent": 20}}
    # the transformer's latest revision serves everyone: its numbers would judge the old bundle
    assert rollout.action == "promote" and rollout.revision == "heart-disease-predictor-00002"
    assert all('revision="heart-disease-predictor-00002"' in q for q in queries)


def raw(mode: str, where: str) -> dict:
    """The existing service as KServe runs it with plain Deployments: asked for by annotation, or reported in
    its status (a cluster whose default mode is raw)."""
    obj = existing()
    if where == "annotation":
        obj["metadata"]["annotations"] = {"serving.kserve.io/deploymentMode": mode}
    else:
        obj["status"] = {"deploymentMode": mode}
    return obj


@pytest.mark.parametrize("mode, where", [("RawDeployment", "annotation"), ("Standard", "status")])
def test_a_raw_deployment_takes_the_new_bundle_whole_and_says_so(mode, where):
    kserve = FakeKServe(raw(mode, where))
    clock = Clock()
    rollout = roll_out(kserve, None, NEW, lambda: pytest.fail("must not create"), SETTINGS, sleep=clock.sleep,
                       clock=clock)  # no Prometheus: nothing to judge without a canary revision
    assert rollout.action == "replaced" and (rollout.previous_uri, rollout.storage_uri) == (OLD, NEW)
    assert f"{mode} has no revisions to split traffic between" in rollout.reasons[0]
    (patch,) = kserve.patches()
    assert "canaryTrafficPercent" not in str(patch)
    stored = kserve.objects[(NS, NAME)]["spec"]
    assert stored["predictor"]["model"]["storageUri"] == NEW
    assert {"name": "STORAGE_URI", "value": NEW} in stored["transformer"]["containers"][0]["env"]
    assert [c[0] for c in kserve.calls].count("wait") == 1 and clock.now == 0


def test_a_raw_deployment_that_never_gets_ready_is_pointed_back():
    kserve = FakeKServe(raw("RawDeployment", "annotation"), ready=False)
    rollout = roll_out(kserve, None, NEW, lambda: None, SETTINGS)
    assert rollout.action == "rollback" and f"pointed back at {OLD}" in rollout.reasons[0]
    stored = kserve.objects[(NS, NAME)]["spec"]
    assert stored["predictor"]["model"]["storageUri"] == OLD and "canaryTrafficPercent" not in stored["predictor"]
    assert {"name": "STORAGE_URI", "value": OLD} in stored["transformer"]["containers"][0]["env"]


def test_run_deploy_tags_a_raw_replacement_without_a_canary_share():
    recorded = []
    outcome = run_deploy(DeployRequest("heart-disease", mode="cluster", namespace=NS, canary_percent=20),
                         {"model_name": "heart-disease", "model_version": "4", "promoted": True, "bundle_uri": NEW},
                         record=lambda *args: recorded.append(args),
                         client=FakeKServe(raw("RawDeployment", "annotation")), prometheus=object())
    assert outcome["action"] == "replaced"
    tags = recorded[0][2]
    assert tags["deploy"] == "replaced" and "deploy_canary_percent" not in tags and tags["deploy_bundle"] == NEW


def test_a_slow_canary_is_rolled_back():
    rollout, _, _ = run(FakeKServe(existing()), {"histogram_quantile": 2.5, "increase(": 500})
    assert rollout.action == "rollback" and "p99 latency 2.500 s > 1.000 s" in rollout.reasons[0]


def test_a_canary_that_never_gets_ready_takes_no_traffic():
    kserve = FakeKServe(existing(), ready=False)
    rollout, queries, _ = run(kserve, {})
    assert rollout.action == "rollback" and "not Ready within 600 s" in rollout.reasons[0]
    assert queries == [] and kserve.patches()[-1]["spec"]["predictor"] == {"canaryTrafficPercent": 0}


def test_unreadable_metrics_roll_back():
    rollout, _, _ = run(FakeKServe(existing()), {ERRORS: ("http", 400)})
    assert rollout.action == "rollback" and "Prometheus answered 400" in rollout.reasons[0]
    with pytest.raises(PrometheusError, match="could not be queried"):
        Prometheus("http://127.0.0.1:9", timeout_s=1).query("up")
    with pytest.raises(ValueError, match="http:// or https:// URL"):
        Prometheus("prometheus:9090")


def test_the_same_bundle_is_left_alone():
    kserve = FakeKServe(existing())
    clock = Clock()
    rollout = roll_out(kserve, None, OLD, lambda: None, SETTINGS, sleep=clock.sleep, clock=clock)
    assert rollout.action == "unchanged" and kserve.patches() == []


def test_a_first_deploy_creates_the_inference_service_with_all_traffic():
    kserve = FakeKServe()
    clock = Clock()
    uri = "s3://models/bundles/heart-disease/4"
    built = lambda: bootstrap.build(NAME, NS, "heart-disease", uri, "reg.example/clinops", "2.0.0")  # noqa: E731
    rollout = roll_out(kserve, None, uri, built, SETTINGS, sleep=clock.sleep, clock=clock)
    assert rollout.action == "created"
    _, body, namespace = next(c for c in kserve.calls if c[0] == "create")
    assert namespace == NS and body["metadata"]["namespace"] == NS
    assert body["apiVersion"] == "serving.kserve.io/v1beta1" and body["kind"] == "InferenceService"
    assert body["metadata"]["labels"] == {"app.kubernetes.io/part-of": "clinops", "clinops.io/workload": "heart-disease"}
    predictor, transformer = body["spec"]["predictor"], body["spec"]["transformer"]
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "sklearn", "version": "1"} and model["storageUri"] == uri
    assert (model["protocolVersion"], model["runtime"]) == ("v2", "clinops-sklearn")
    assert "canaryTrafficPercent" not in predictor and "canaryTrafficPercent" not in transformer
    for part, component in ((predictor, "predictor"), (transformer, "transformer")):
        assert part["serviceAccountName"] == "clinops-serving"  # KServe's S3 settings and credentials
        assert part["labels"] == {"clinops.io/workload": "heart-disease", "clinops.io/component": component}
    container = transformer["containers"][0]
    assert container["image"] == "reg.example/clinops/transformer:2.0.0"
    assert {"name": "STORAGE_URI", "value": uri} in container["env"]
    assert "--workload=heart-disease" in container["args"]
    drift, = predictor["containers"]
    assert drift["image"] == "reg.example/clinops/drift:2.0.0"
    assert "--bundle_store=s3://models/bundles" in drift["args"]
    assert predictor["logger"] == {"mode": "all", "url": "http://localhost:8083/"}
    with pytest.raises(ValueError, match="unknown workload 'x'"):
        bootstrap.build(NAME, NS, "x", uri)
    with pytest.raises(ValueError, match="not a heart-disease bundle in a store"):
        bootstrap.build(NAME, NS, "heart-disease", "s3://models/pneumonia/4")


def test_a_first_deploy_names_the_images_by_the_settings(monkeypatch):
    from components.common.settings import reload_settings

    monkeypatch.setenv("CLINOPS_IMAGE_REGISTRY", "registry.example:5000/ml")
    monkeypatch.setenv("CLINOPS_IMAGE_TAG", "3.1.4")
    reload_settings()
    try:
        kserve = FakeKServe()
        request = DeployRequest("pneumonia", mode="cluster", namespace=NS)
        outcome = run_deploy(request, {"model_name": "pneumonia", "model_version": "2", "promoted": True,
                                       "bundle_uri": "s3://models/bundles/pneumonia/2"},
                             record=lambda *args: None, client=kserve, prometheus=object())
    finally:  # no cached settings keep this registry for the tests after
        monkeypatch.delenv("CLINOPS_IMAGE_REGISTRY")
        monkeypatch.delenv("CLINOPS_IMAGE_TAG")
        reload_settings()
    assert outcome["action"] == "created" and outcome["target"] == f"{NS}/pneumonia"
    _, body, _ = next(c for c in kserve.calls if c[0] == "create")
    images = {c["name"]: c["image"] for part in body["spec"].values() for c in part.get("containers", [])}
    assert images == {"kserve-container": "registry.example:5000/ml/transformer:3.1.4",
                      "drift": "registry.example:5000/ml/drift:3.1.4"}


def test_settings_and_patches_refuse_what_kserve_would_not_do():
    with pytest.raises(ValueError, match="canary percent 100: between 1 and 99"):
        RolloutSettings(NS, NAME, canary_percent=100)
    with pytest.raises(ValueError, match="no predictor.model"):
        isvc.rollout_patch({"metadata": {"name": "x"}, "spec": {"predictor": {"containers": []}}}, NEW, 10)


def test_run_deploy_tags_the_version_with_the_cluster_outcome(monkeypatch):
    kserve = FakeKServe(existing())
    recorded = []
    request = DeployRequest("heart-disease", mode="cluster", namespace=NS, canary_percent=20, period_s=120,
                            interval_s=60)
    clock = Clock()
    with FakePrometheus({ERRORS: 0.0, "histogram_quantile": 0.1, "increase(": 40}) as prometheus:
        outcome = run_deploy(request, {"model_name": "heart-disease", "model_version": "4", "promoted": True,
                                       "bundle_uri": NEW},
                             record=lambda *args: recorded.append(args), client=kserve,
                             prometheus=Prometheus(prometheus.url), sleep=clock.sleep, clock=clock)
    assert outcome["action"] == "promote" and outcome["target"] == "clinical/heart-disease"
    (model, version, tags), = recorded
    assert (model, version) == ("heart-disease", "4")
    assert tags["deploy"] == "promote" and tags["deploy_target"] == "clinical/heart-disease"
    assert tags["deploy_bundle"] == NEW and tags["deploy_canary_percent"] == "20"
    assert "2 samples within limits" in tags["deploy_reasons"] and tags["deploy_at"].endswith("+00:00")


def test_run_deploy_leaves_an_unpromoted_version_and_off_alone():
    recorded = []
    record = {"model_name": "m", "model_version": "5", "promoted": False, "bundle_uri": NEW}
    outcome = run_deploy(DeployRequest("heart-disease", mode="cluster"), record,
                         record=lambda *args: recorded.append(args), client=FakeKServe())
    assert outcome["action"] == "skipped" and "version 5 was not promoted" in outcome["reasons"][0]
    assert recorded[0][2]["deploy"] == "skipped"
    assert run_deploy(DeployRequest("heart-disease", mode="off"), record | {"promoted": True},
                      record=lambda *a: pytest.fail("off records nothing"))["action"] == "skipped"
    with pytest.raises(ValueError, match="deploy mode 'k8s'; known: off, auto, cluster, local"):
        DeployRequest("heart-disease", mode="k8s")
