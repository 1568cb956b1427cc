"""The InferenceService the deploy step creates when the namespace has none: the object the overlays deploy
(``manifests/serving/<workload>-isvc.yaml`` with the ``drift`` kustomize component), so that a service made
by the pipeline is let through by the same NetworkPolicies (``clinops.io/workload`` and
``clinops.io/component`` labels), gets its S3 credentials through the same ServiceAccount, runs as hardened,
and feeds its drift sidecar through KServe's request logger. No canary: the first revision takes all traffic.

Images come from the registry and tag in the settings (``CLINOPS_IMAGE_REGISTRY``, ``CLINOPS_IMAGE_TAG``,
which ``make images`` bakes into the component image), never from a hard-coded registry.
``tests/manifests/test_bootstrap_isvc.py`` keeps this equal to the rendered staging overlay's objects."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from kserve import V1beta1InferenceService, constants
from kubernetes.client import V1ObjectMeta

from bundle import workloads
from components.common.image import DEFAULT_REGISTRY, DEFAULT_TAG, image_ref
from components.deploy.isvc import MODEL_DIR, MODEL_FORMATS, STORAGE_URI_ENV

SERVICE_ACCOUNT = "clinops-serving"  # manifests/storage: KServe's S3 annotations and the clinops-s3 Secret
CONFIG_MAP = "clinops-config"
S3_SECRET = "clinops-s3"
DRIFT_LOG_DIR = "/var/lib/clinops-drift"
HTTP_PORT, GRPC_PORT = 8080, 8081  # the runtimes' ports in a pod (manifests/serving)
LOGGER_MODE = {"heart-disease": "all", "pneumonia": "response"}  # pneumonia: the score only, no X-ray kept


@dataclass(frozen=True)
class Sizing:
    """What differs between the workloads' InferenceServices."""

    runtime: str
    predictor_max: int
    predictor_target: int
    transformer_target: int
    predictor_resources: tuple[str, str, str, str]  # cpu request, memory request, cpu limit, memory limit
    transformer_resources: tuple[str, str, str, str]
    ready_failures: int
    live_delay_s: int
    transformer_tmp: str


SIZING = {
    "heart-disease": Sizing("clinops-sklearn", 4, 8, 16, ("500m", "512Mi", "1", "1Gi"),
                            ("500m", "512Mi", "1", "1Gi"), 3, 10, "256Mi"),
    "pneumonia": Sizing("clinops-torch", 2, 4, 8, ("2", "4Gi", "4", "8Gi"), ("1", "1Gi", "2", "2Gi"), 6, 30,
                        "512Mi"),
}
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}}
HARDENED = {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def _resources(sizes: tuple[str, str, str, str]) -> dict:
    cpu, memory, cpu_limit, memory_limit = sizes
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit, "memory": memory_limit}}


def _probes(sizing: Sizing) -> dict:
    return {"readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": HTTP_PORT}, "periodSeconds": 5,
                               "failureThreshold": sizing.ready_failures},
            "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": HTTP_PORT},
                              "initialDelaySeconds": sizing.live_delay_s, "periodSeconds": 10}}


def bundle_store(storage_uri: str, workload: str) -> str:
    """The store a bundle lies in (``<store>/<workload>/<version>``): the drift sidecar follows the champion
    pointer there."""
    parts = storage_uri.rstrip("/").rsplit("/", 2)
    store, found = (parts[0], parts[1]) if len(parts) == 3 else ("", "")
    if found != workload or not store:
        raise ValueError(f"{storage_uri}: not a {workload} bundle in a store (<store>/{workload}/<version>)")
    return store


def drift_sidecar(workload: str, store: str, image: str) -> dict:
    port = workloads.get(workload).ports.drift
    health = {"path": "/healthz", "port": port}
    return {
        "name": "drift", "image": image,
        "args": [f"--workload={workload}", f"--port={port}", "--host=0.0.0.0", f"--log_dir={DRIFT_LOG_DIR}",
                 f"--bundle_store={store}"],
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "NUMBA_CACHE_DIR", "value": "/tmp/numba"},
                {"name": "CLINOPS_S3_ENDPOINT",
                 "valueFrom": {"configMapKeyRef": {"name": CONFIG_MAP, "key": "CLINOPS_S3_ENDPOINT"}}}],
        "envFrom": [{"secretRef": {"name": S3_SECRET}}],
        "readinessProbe": {"httpGet": health, "periodSeconds": 10},
        "livenessProbe": {"httpGet": dict(health), "initialDelaySeconds": 20, "periodSeconds": 20},
        "securityContext": copy.deepcopy(HARDENED),
        "resources": _resources(("250m", "512Mi", "1", "1Gi")),
        "volumeMounts": [{"name": "drift-log", "mountPath": DRIFT_LOG_DIR}, {"name": "drift-tmp", "mountPath": "/tmp"}],
    }


def spec(workload: str, storage_uri: str, registry: str = DEFAULT_REGISTRY, tag: str = DEFAULT_TAG) -> dict:
    """The InferenceService's spec, as the Kubernetes API holds it."""
    if workload not in MODEL_FORMATS:
        raise ValueError(f"unknown workload {workload!r}; known: {', '.join(MODEL_FORMATS)}")
    sizing = SIZING[workload]
    port = workloads.get(workload).ports.drift
    predictor = {
        "serviceAccountName": SERVICE_ACCOUNT, "minReplicas": 1, "maxReplicas": sizing.predictor_max,
        "scaleMetric": "concurrency", "scaleTarget": sizing.predictor_target,
        "labels": {"clinops.io/workload": workload, "clinops.io/component": "predictor"},
        "annotations": {"clinops.io/drift-port": str(port)},  # how the PodMonitor finds the sidecar
        "securityContext": copy.deepcopy(POD_SECURITY),
        "model": {"modelFormat": {"name": MODEL_FORMATS[workload], "version": "1"}, "runtime": sizing.runtime,
                  "protocolVersion": "v2", "storageUri": storage_uri, **_probes(sizing),
                  "resources": _resources(sizing.predictor_resources)},
        "logger": {"mode": LOGGER_MODE[workload], "url": f"http://localhost:{port}/"},
        "containers": [drift_sidecar(workload, bundle_store(storage_uri, workload), image_ref("drift", registry, tag))],
        "volumes": [{"name": "drift-log", "emptyDir": {"sizeLimit": "512Mi"}},
                    {"name": "drift-tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
    }
    transformer = {
        "serviceAccountName": SERVICE_ACCOUNT, "minReplicas": 1, "maxReplicas": 4,
        "scaleMetric": "concurrency", "scaleTarget": sizing.transformer_target,
        "labels": {"clinops.io/workload": workload, "clinops.io/component": "transformer"},
        "securityContext": copy.deepcopy(POD_SECURITY),
        "containers": [{
            "name": "kserve-container", "image": image_ref("transformer", registry, tag),
            "args": [f"--model_name={workload}", f"--workload={workload}", f"--model_dir={MODEL_DIR}",
                     "--predictor_protocol=v2", f"--http_port={HTTP_PORT}", f"--grpc_port={GRPC_PORT}"],
            "env": [{"name": STORAGE_URI_ENV, "value": storage_uri}, {"name": "HOME", "value": "/tmp"}],
            "ports": [{"containerPort": HTTP_PORT, "name": "http1", "protocol": "TCP"}],
            **_probes(sizing),
            "securityContext": copy.deepcopy(HARDENED),
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            "resources": _resources(sizing.transformer_resources),
        }],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": sizing.transformer_tmp}}],
    }
    return {"predictor": predictor, "transformer": transformer}


def build(name: str, namespace: str, workload: str, storage_uri: str, registry: str = DEFAULT_REGISTRY,
          tag: str = DEFAULT_TAG) -> V1beta1InferenceService:
    """The InferenceService for ``KServeClient.create`` (the spec stays plain data: the client serialises it
    as is)."""
    body = spec(workload, storage_uri, registry, tag)
    return V1beta1InferenceService(
        api_version=constants.KSERVE_V1BETA1, kind=constants.KSERVE_KIND_INFERENCESERVICE,
        metadata=V1ObjectMeta(name=name, namespace=namespace,
                              labels={"app.kubernetes.io/part-of": "clinops", "clinops.io/workload": workload}),
        spec=body)
