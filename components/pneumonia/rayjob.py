"""Cluster mode of the training step: build a KubeRay ``RayJob`` (ray.io/v1) from the manifest
template, create it with the kubernetes client, wait for a terminal status, and collect the
submitter's logs. The RayJob's entrypoint is :mod:`components.pneumonia.entrypoint`.

The API objects are passed in, so tests drive this module with fakes and no cluster.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from components.pneumonia.settings import train_settings

GROUP, VERSION, PLURAL = "ray.io", "v1", "rayjobs"
TEMPLATE = Path(__file__).resolve().parents[2] / "manifests" / "rayjob" / "rayjob.yaml"

# KubeRay's two status fields: jobDeploymentStatus (the RayJob's lifecycle) and jobStatus (Ray's own).
SUCCEEDED_JOB = {"SUCCEEDED"}
FAILED_JOB = {"FAILED", "STOPPED"}
FAILED_DEPLOYMENT = {"Failed", "ValidationFailed"}
TERMINAL_DEPLOYMENT = {"Complete"} | FAILED_DEPLOYMENT


class RayJobFailed(RuntimeError):
    def __init__(self, message: str, status: RayJobStatus | None = None, logs: str = ""):
        super().__init__(message)
        self.status = status
        self.logs = logs


@dataclass
class RayJobSpec:
    """What varies per pipeline run."""

    name: str
    namespace: str
    image: str
    data_uri: str
    output_uri: str
    train_config: dict = field(default_factory=dict)
    n_trials: int = 1
    num_workers: int = 2
    use_gpu: bool = True
    gpus_per_worker: int = 1
    cpus_per_worker: int = 8
    memory_per_worker: str = "32Gi"
    seed: int = 0
    ttl_seconds_after_finished: int = 3600
    active_deadline_seconds: int = 6 * 3600
    env: dict[str, str] = field(default_factory=dict)
    service_account: str | None = None
    # Ray Train's checkpoints: shared storage every pod reaches (TrainSettings.rayjob_storage by default)
    ray_storage: str = field(default_factory=lambda: train_settings().rayjob_storage)


@dataclass
class RayJobStatus:
    name: str
    deployment_status: str | None
    job_status: str | None
    message: str = ""
    ray_job_id: str | None = None
    dashboard_url: str | None = None

    @property
    def terminal(self) -> bool:
        return (self.deployment_status in TERMINAL_DEPLOYMENT or self.job_status in SUCCEEDED_JOB | FAILED_JOB)

    @property
    def succeeded(self) -> bool:
        return self.job_status in SUCCEEDED_JOB and self.deployment_status not in FAILED_DEPLOYMENT


def job_name(run_id: str, prefix: str = "pneumonia-train") -> str:
    """A valid, unique RayJob name (DNS-1123, ≤ 47 characters so KubeRay's derived names fit)."""
    suffix = re.sub(r"[^a-z0-9-]", "-", run_id.lower()).strip("-")
    name = f"{prefix}-{suffix}" if suffix else prefix
    return name[:47].rstrip("-")


def entrypoint(spec: RayJobSpec) -> str:
    args = ["python", "-m", "components.pneumonia.entrypoint", "--data-uri", spec.data_uri,
            "--output-uri", spec.output_uri, "--config", json.dumps(spec.train_config, sort_keys=True),
            "--n-trials", str(spec.n_trials), "--num-workers", str(spec.num_workers),
            "--cpus-per-worker", str(max(1, spec.cpus_per_worker - 1)), "--study-name", spec.name,
            "--seed", str(spec.seed), "--ray-storage", spec.ray_storage]
    if spec.use_gpu:
        args.append("--use-gpu")
    return shlex.join(args)


def load_template(path: Path = TEMPLATE) -> dict:
    return yaml.safe_load(Path(path).read_text())


def build_rayjob(spec: RayJobSpec, template: dict | None = None) -> dict:
    """The RayJob body for ``spec``: the template with this run's values set."""
    body = copy.deepcopy(template if template is not None else load_template())
    if body.get("apiVersion") != f"{GROUP}/{VERSION}" or body.get("kind") != "RayJob":
        raise ValueError("the RayJob template must be apiVersion ray.io/v1, kind RayJob")
    body["metadata"]["name"] = spec.name
    body["metadata"]["namespace"] = spec.namespace
    job = body["spec"]
    job["entrypoint"] = entrypoint(spec)
    job["shutdownAfterJobFinishes"] = True
    job["ttlSecondsAfterFinished"] = int(spec.ttl_seconds_after_finished)
    job["activeDeadlineSeconds"] = int(spec.active_deadline_seconds)
    runtime_env = yaml.safe_load(job.get("runtimeEnvYAML") or "{}") or {}
    runtime_env.setdefault("env_vars", {}).update({k: str(v) for k, v in spec.env.items()})
    job["runtimeEnvYAML"] = yaml.safe_dump(runtime_env, sort_keys=True)

    cluster = job["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]
    head["containers"][0]["image"] = spec.image
    groups = cluster["workerGroupSpecs"]
    if len(groups) != 1:
        raise ValueError("the RayJob template must have exactly one worker group")
    group = groups[0]
    group["replicas"] = group["minReplicas"] = group["maxReplicas"] = int(spec.num_workers)
    pod = group["template"]["spec"]
    worker = pod["containers"][0]
    worker["image"] = spec.image
    resources = {"cpu": str(spec.cpus_per_worker), "memory": spec.memory_per_worker}
    if spec.use_gpu:
        resources["nvidia.com/gpu"] = str(spec.gpus_per_worker)
    else:
        pod.pop("tolerations", None)
    worker["resources"] = {"requests": dict(resources), "limits": dict(resources)}
    if spec.service_account:
        head["serviceAccountName"] = pod["serviceAccountName"] = spec.service_account
    return body


def read_status(obj: dict) -> RayJobStatus:
    status = obj.get("status") or {}
    return RayJobStatus(name=obj.get("metadata", {}).get("name", ""),
                        deployment_status=status.get("jobDeploymentStatus"), job_status=status.get("jobStatus"),
                        message=status.get("message", ""), ray_job_id=status.get("jobId"),
                        dashboard_url=status.get("dashboardURL"))


def create(custom_api, body: dict) -> dict:
    return custom_api.create_namespaced_custom_object(GROUP, VERSION, body["metadata"]["namespace"], PLURAL, body)


def wait(custom_api, name: str, namespace: str, timeout_s: float = 6 * 3600, poll_s: float = 10.0,
         sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
         on_change: Callable[[RayJobStatus], None] = lambda s: print(
             f"rayjob {s.name}: {s.deployment_status} / {s.job_status} {s.message}".rstrip(), flush=True),
         ) -> RayJobStatus:
    """Poll until the RayJob reaches a terminal status or ``timeout_s`` passes."""
    deadline = clock() + timeout_s
    last = None
    while True:
        status = read_status(custom_api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))
        if (status.deployment_status, status.job_status) != last:
            on_change(status)
            last = (status.deployment_status, status.job_status)
        if status.terminal:
            return status
        if clock() >= deadline:
            raise TimeoutError(f"rayjob {name} not finished after {timeout_s:.0f} s "
                               f"({status.deployment_status} / {status.job_status})")
        sleep(poll_s)


def submitter_logs(core_api, name: str, namespace: str, tail_lines: int = 400) -> str:
    """Logs of the submitter pod(s): KubeRay runs the entrypoint in a Kubernetes Job named like the RayJob."""
    if core_api is None:
        return ""
    pods = core_api.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
    chunks = []
    for pod in pods:
        try:
            chunks.append(core_api.read_namespaced_pod_log(pod.metadata.name, namespace, tail_lines=tail_lines))
        except Exception as err:  # a pod already gone must not hide the job's outcome
            chunks.append(f"[logs of {pod.metadata.name} unavailable: {err}]")
    return "\n".join(chunks)


def kubernetes_apis():
    """(CustomObjectsApi, CoreV1Api) from the in-cluster service account, else the local kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi(), client.CoreV1Api()


def run(spec: RayJobSpec, custom_api=None, core_api=None, timeout_s: float = 6 * 3600, poll_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
        template: dict | None = None) -> tuple[RayJobStatus, str]:
    """Create the RayJob, wait for it and return (status, logs); raise :class:`RayJobFailed` on failure."""
    if custom_api is None:
        custom_api, core_api = kubernetes_apis()
    body = build_rayjob(spec, template)
    create(custom_api, body)
    print(f"rayjob {spec.name} created in {spec.namespace}", flush=True)
    status = wait(custom_api, spec.name, spec.namespace, timeout_s, poll_s, sleep, clock)
    logs = submitter_logs(core_api, spec.name, spec.namespace)
    if logs:
        print(logs, flush=True)
    if not status.succeeded:
        raise RayJobFailed(f"rayjob {spec.name} ended {status.deployment_status} / {status.job_status}: "
                           f"{status.message}", status, logs)
    return status, logs


def result_line(logs: str) -> dict:
    """The entrypoint's last stdout line is its JSON summary; {} when the logs do not hold it."""
    for line in reversed(logs.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return {}
