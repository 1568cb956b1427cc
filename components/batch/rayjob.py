"""Cluster mode of the batch-scoring step: a KubeRay ``RayJob`` whose entrypoint is ``python -m
inference.batch`` and whose CPU workers host the scorer actors. The body is the training RayJob's
template (``manifests/rayjob/rayjob.yaml``) with this entrypoint, image and worker group; creating,
waiting and log collection are the training step's (:mod:`components.pneumonia.rayjob`)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from components.pneumonia import rayjob as training_rayjob


@dataclass
class BatchJobSpec:
    name: str
    namespace: str
    image: str
    workload: str
    source: str  # s3:// CSV or image prefix: every pod reaches it
    output_uri: str  # s3:// prefix the entrypoint uploads its folder to
    bundle_uri: str = ""  # "" = the champion in the store the pods are configured with
    actors: int = 2
    cpus_per_worker: int = 4
    memory_per_worker: str = "8Gi"
    batch_size: int = 0
    explain: bool = True
    env: dict[str, str] | None = None
    service_account: str | None = None


def entrypoint(spec: BatchJobSpec) -> str:
    args = ["python", "-m", "inference.batch", "--workload", spec.workload, "--input", spec.source,
            "--output", spec.output_uri, "--actors", str(spec.actors)]
    if spec.bundle_uri:
        args += ["--bundle", spec.bundle_uri]
    if spec.batch_size:
        args += ["--batch-size", str(spec.batch_size)]
    if not spec.explain:
        args.append("--no-explain")
    return shlex.join(args)


def build(spec: BatchJobSpec, template: dict | None = None) -> dict:
    """The RayJob body: one CPU worker per actor, the batch command as entrypoint."""
    train = training_rayjob.RayJobSpec(name=spec.name, namespace=spec.namespace, image=spec.image, data_uri="",
                                       output_uri=spec.output_uri, num_workers=spec.actors, use_gpu=False,
                                       cpus_per_worker=spec.cpus_per_worker, memory_per_worker=spec.memory_per_worker,
                                       env=dict(spec.env or {}), service_account=spec.service_account,
                                       ray_storage="")
    body = training_rayjob.build_rayjob(train, template)
    body["spec"]["entrypoint"] = entrypoint(spec)
    labels = {"app.kubernetes.io/name": f"{spec.workload}-batch", "clinops.io/workload": spec.workload}
    body["metadata"].setdefault("labels", {}).update(labels)
    group = body["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    group["groupName"] = "cpu-workers"
    return body


def run(spec: BatchJobSpec, custom_api=None, core_api=None, timeout_s: float = 6 * 3600, poll_s: float = 10.0,
        template: dict | None = None) -> str:
    """Create the RayJob, wait for it, return the submitter's logs; raises ``RayJobFailed`` on failure."""
    if custom_api is None:
        custom_api, core_api = training_rayjob.kubernetes_apis()
    body = build(spec, template)
    training_rayjob.create(custom_api, body)
    print(f"rayjob {spec.name} created in {spec.namespace}", flush=True)
    status = training_rayjob.wait(custom_api, spec.name, spec.namespace, timeout_s, poll_s)
    logs = training_rayjob.submitter_logs(core_api, spec.name, spec.namespace)
    if logs:
        print(logs, flush=True)
    if not status.succeeded:
        raise training_rayjob.RayJobFailed(f"rayjob {spec.name} ended {status.deployment_status} / "
                                           f"{status.job_status}: {status.message}", status, logs)
    return logs
