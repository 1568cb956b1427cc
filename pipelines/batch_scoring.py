"""Batch-scoring pipelines, one per workload: a CSV of patients (``heart-disease-batch``) or a folder of
X-rays (``pneumonia-batch``) scored with the champion bundle (or ``bundle_uri``) on Ray Data; the results
as a Parquet Dataset, the counts as Metrics, the report as HTML and Markdown. ``backend=local`` runs a
local Ray inside the step's pod (or here, with kfp.local); ``backend=rayjob`` submits a KubeRay RayJob,
as the pneumonia training step does. :func:`run` runs one locally (``clinops score``)."""

from dataclasses import dataclass

from kfp import dsl

from components.batch import component as c
from components.batch.step import PHANTOM, UCI
from components.common.image import CLINOPS_IMAGE
from components.common.platform import with_platform_env


def _pipeline(workload: str, name: str, default_source: str, description: str):
    @dsl.pipeline(name=name, description=description)
    def batch_pipeline(
        source: str = default_source,
        bundle_uri: str = "",  # "" = the workload's champion
        backend: str = "local",
        actors: int = 2,
        batch_size: int = 0,  # 0 = the scorer's default (1024 rows, 32 images)
        explain: bool = True,  # heart-disease: the explanation's top features per row
        output_uri: str = "",  # also write the results folder here (a folder or s3://); required for rayjob
        rayjob_namespace: str = "kubeflow",
        rayjob_image: str = CLINOPS_IMAGE,  # the scorer needs the serving code and the models' frameworks
    ) -> str:
        scored = c.score(workload=workload, source=source, bundle_uri=bundle_uri, backend=backend, actors=actors,
                         batch_size=batch_size, explain=explain, rayjob_namespace=rayjob_namespace,
                         rayjob_image=rayjob_image, output_uri=output_uri).set_display_name(f"score {workload}")
        scored.set_caching_options(False)  # the champion may have moved: score with the one of this run
        scored.set_cpu_request("2").set_memory_request("4G")
        with_platform_env(scored)
        return scored.outputs["Output"]

    return batch_pipeline


@dataclass(frozen=True)
class BatchPipeline:
    """What the catalog and the compiler read of a pipeline: ``PIPELINE`` and ``PIPELINE_NAME``."""

    workload: str
    PIPELINE_NAME: str
    PIPELINE: object


HEART_DISEASE = BatchPipeline("heart-disease", "heart-disease-batch", _pipeline(
    "heart-disease", "heart-disease-batch", UCI,
    "Score a CSV of patients with the heart-disease champion on Ray Data: probability, prediction, risk "
    "level and the top features of the explanation per patient; refused rows with their reasons."))
PNEUMONIA = BatchPipeline("pneumonia", "pneumonia-batch", _pipeline(
    "pneumonia", "pneumonia-batch", PHANTOM,
    "Score a folder of chest X-rays with the pneumonia champion on Ray Data: probability and label per "
    "image; undecodable files refused with their reasons."))
BY_WORKLOAD = {p.workload: p for p in (HEART_DISEASE, PNEUMONIA)}
LAST_RUN = "last-batch.json"


def run(workload: str, source: str = "", output_dir: str = "", **overrides) -> dict:
    """Run ``workload``'s batch pipeline locally (kfp.local); returns (and writes to
    ``$CLINOPS_HOME/pipelines/<workload>/last-batch.json``) the summary, with ``output_dir``, where the
    results folder is copied (default ``$CLINOPS_HOME/batch/<workload>``)."""
    import os
    from pathlib import Path

    from components.common.settings import reload_settings
    from pipelines.local import _init_kfp_local, recorded_run

    if workload not in BY_WORKLOAD:
        raise KeyError(f"unknown workload {workload!r}; known: {', '.join(BY_WORKLOAD)}")
    settings = reload_settings()
    os.environ["CLINOPS_HOME"] = str(settings.home)  # component subprocesses read the same home
    out_dir = settings.pipeline_dir(workload)
    out_dir.mkdir(parents=True, exist_ok=True)
    output_dir = output_dir or str(settings.home / "batch" / workload)
    if "://" not in output_dir:
        output_dir = str(Path(output_dir).resolve())
    _init_kfp_local(out_dir / "batch-root")
    arguments = {"output_uri": output_dir} | ({"source": source} if source else {}) | overrides
    if arguments.get("source") and "://" not in arguments["source"] and Path(arguments["source"]).exists():
        arguments["source"] = str(Path(arguments["source"]).resolve())  # the task runs in another folder
    record: dict = {"workload": workload, "arguments": arguments}
    return recorded_run(BY_WORKLOAD[workload].PIPELINE, arguments, record, out_dir / LAST_RUN, f"{workload}-batch",
                        output_dir=output_dir)
