"""The manifests start our processes the way those processes parse them: each container's arguments
(the image's ENTRYPOINT from inference/Dockerfile, then the manifest's, then what KServe adds) go
through the runtime's own parser; the logger points at the drift sidecar's port in the same pod;
image names are those the Dockerfiles build."""

from __future__ import annotations

import json
import re
from urllib.parse import urlparse

import k8s_policy
import pytest
from support.manifests import OVERLAYS, find

from bundle import workloads
from components.deploy.isvc import MODEL_FORMATS
from pipelines import manifests

pytestmark = pytest.mark.unit
DOCKERFILE = (manifests.REPO / "inference" / "Dockerfile").read_text()
LOGGER_MODE = {"heart-disease": "all", "pneumonia": "response"}
RUNTIME = {"heart-disease": "clinops-sklearn", "pneumonia": "clinops-torch"}


def entrypoint_args(target: str) -> list[str]:
    """The arguments after ``python -m <module>`` in the ENTRYPOINT of a build target."""
    stage = DOCKERFILE.split(f" AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", stage, re.M).group(1))
    assert entry[:2] == ["python", "-m"]
    return entry[3:]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("workload", ["heart-disease", "pneumonia"])
def test_predictor_and_transformer_parse_their_arguments(overlays, overlay, workload):
    from inference.sklearn_predictor.__main__ import parse_settings as sklearn_settings
    from inference.torch_predictor.__main__ import parse_settings as torch_settings
    from inference.transformer.__main__ import parse_settings as transformer_settings

    objects = overlays[overlay]
    isvc = find(objects, "InferenceService", workload)["spec"]
    model = isvc["predictor"]["model"]
    assert model["runtime"] == RUNTIME[workload] and model["protocolVersion"] == "v2"
    assert model["modelFormat"]["name"] == MODEL_FORMATS[workload]  # what the deploy step writes
    runtime = find(objects, "ServingRuntime", model["runtime"])
    assert {"name": model["modelFormat"]["name"], "version": "1", "autoSelect": True, "priority": 2} \
        in runtime["spec"]["supportedModelFormats"]
    assert "v2" in runtime["spec"]["protocolVersions"]
    container = runtime["spec"]["containers"][0]
    target, parse = ("sklearn-predictor", sklearn_settings) if workload == "heart-disease" else ("torch-predictor", torch_settings)
    args = [a.replace("{{.Name}}", workload) for a in entrypoint_args(target) + container["args"] + model.get("args", [])]
    settings, parsed = parse(args)
    assert (settings.model_name, settings.workload, parsed.bundle, parsed.http_port) == (workload, workload, "/mnt/models", 8080)
    assert container["ports"][0]["containerPort"] == 8080

    transformer = isvc["transformer"]["containers"][0]
    kserve_adds = ["--model_name", workload, "--predictor_host", f"{workload}-predictor.clinops"]
    settings, parsed = transformer_settings(entrypoint_args("transformer") + transformer["args"] + kserve_adds)
    assert (settings.workload, settings.model_name, parsed.bundle, parsed.predictor_protocol) == \
        (workload, workload, "/mnt/models", "v2")
    assert {"name": "STORAGE_URI", "value": model["storageUri"]} in transformer["env"]


def test_runtime_parsers_refuse_a_wrong_flag():
    from inference.transformer.__main__ import parse_settings

    with pytest.raises(SystemExit):
        parse_settings(entrypoint_args("transformer") + ["--workload=kidney", "--predictor_host=p:80"])


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("workload", ["heart-disease", "pneumonia"])
def test_logger_reaches_the_drift_sidecar_in_the_predictor_pod(overlays, overlay, workload):
    from inference.drift.settings import parse

    predictor = find(overlays[overlay], "InferenceService", workload)["spec"]["predictor"]
    url = urlparse(predictor["logger"]["url"])
    assert predictor["logger"]["mode"] == LOGGER_MODE[workload]
    assert url.hostname == "localhost" and url.port == workloads.get(workload).ports.drift
    drift = find([{"kind": "c", "metadata": {"name": c["name"]}, **c} for c in predictor["containers"]], "c", "drift")
    settings = parse(entrypoint_args("drift") + drift["args"], environ={})
    assert (settings.workload, settings.port, settings.host) == (workload, url.port, "0.0.0.0")
    # Knative allows one container with ports: the sidecar is found by the pod annotation instead
    assert "ports" not in drift and [c for c in predictor["containers"] if c.get("ports")] == []
    assert predictor["annotations"]["clinops.io/drift-port"] == str(url.port)
    assert drift["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": url.port}
    mounts = {m["mountPath"] for m in drift["volumeMounts"]}
    assert settings.log_dir in mounts and "/tmp" in mounts


def test_storage_uri_and_s3_settings_agree(overlays):
    objects = overlays["staging"]
    account = find(objects, "ServiceAccount", "clinops-serving")
    secret = find(objects, "Secret", "clinops-s3")
    assert account["secrets"] == [{"name": "clinops-s3"}]
    assert set(secret["data"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert secret["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"] == "minio:9000"
    config = find(objects, "ConfigMap", "clinops-config")["data"]
    for workload in ("heart-disease", "pneumonia"):
        isvc = find(objects, "InferenceService", workload)["spec"]["predictor"]
        assert isvc["serviceAccountName"] == "clinops-serving"
        assert isvc["model"]["storageUri"].startswith(config["CLINOPS_BUNDLE_STORE"] + f"/{workload}/")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_the_ones_the_dockerfiles_build(overlays, overlay):
    built = set(re.findall(r"-t (docker\.io/clinops/[a-z-]+):", DOCKERFILE))
    ours = {c["image"].rsplit(":", 1)[0] for o in overlays[overlay] for _, c, _ in k8s_policy.containers(o)
            if c.get("image", "").startswith("docker.io/clinops/")}
    assert ours - {"docker.io/clinops/clinops"} <= built
    assert {"docker.io/clinops/transformer", "docker.io/clinops/sklearn-predictor",
            "docker.io/clinops/torch-predictor", "docker.io/clinops/drift"} <= ours


def test_canary_only_where_knative_serves(overlays):
    for overlay in OVERLAYS:
        for workload in ("heart-disease", "pneumonia"):
            isvc = find(overlays[overlay], "InferenceService", workload)
            raw = isvc["metadata"].get("annotations", {}).get("serving.kserve.io/deploymentMode") == "RawDeployment"
            assert ("canaryTrafficPercent" in isvc["spec"]["predictor"]) == (not raw)
            if not raw:
                assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10


# KServe's webhook (validateAutoScalingCompExtension): plain Deployments scale with an HPA on cpu or memory
# (cpu: a utilisation percentage), Knative revisions with its autoscaler on concurrency or rps
RAW_METRICS, KNATIVE_METRICS = {"cpu", "memory"}, {"concurrency", "rps"}


def scaling_problems(isvc: dict) -> list[str]:
    raw = isvc["metadata"].get("annotations", {}).get("serving.kserve.io/deploymentMode") in ("RawDeployment", "Standard")
    found = []
    for component in ("predictor", "transformer"):
        spec = isvc["spec"].get(component, {})
        metric, target = spec.get("scaleMetric", "cpu" if raw else "concurrency"), spec.get("scaleTarget")
        if metric not in (RAW_METRICS if raw else KNATIVE_METRICS):
            found.append(f"{isvc['metadata']['name']} {component}: scaleMetric {metric} in "
                         f"{'RawDeployment' if raw else 'Serverless'} mode")
        elif raw and metric == "cpu" and target is not None and not 1 <= target <= 100:
            found.append(f"{isvc['metadata']['name']} {component}: cpu scaleTarget {target} is not a percentage")
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaling_uses_the_metrics_of_the_deployment_mode(overlays, overlay):
    services = [o for o in overlays[overlay] if o["kind"] == "InferenceService"]
    assert len(services) == 2 and [p for isvc in services for p in scaling_problems(isvc)] == []


def test_the_scaling_check_refuses_concurrency_on_a_raw_deployment(overlays):
    import copy

    isvc = copy.deepcopy(find(overlays["local"], "InferenceService", "heart-disease"))
    isvc["spec"]["predictor"]["scaleMetric"] = "concurrency"
    isvc["spec"]["transformer"]["scaleTarget"] = 160
    assert scaling_problems(isvc) == ["heart-disease predictor: scaleMetric concurrency in RawDeployment mode",
                                      "heart-disease transformer: cpu scaleTarget 160 is not a percentage"]
