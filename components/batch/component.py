"""The KFP component of the batch pipelines. Its body imports no serving code: it runs ``python -m
inference.batch`` in the project image (``backend=local``: a local Ray inside the step's pod) or submits
it as a KubeRay RayJob (``backend=rayjob``)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Markdown, Metrics, Output

from components.common.image import CLINOPS_IMAGE


@dsl.component(base_image=CLINOPS_IMAGE, install_kfp_package=False)
def score(workload: str, source: str, bundle_uri: str, backend: str, actors: int, batch_size: int, explain: bool,
          rayjob_namespace: str, rayjob_image: str, output_uri: str, results: Output[Dataset],
          summary: Output[Metrics], report_html: Output[HTML], report_md: Output[Markdown]) -> str:
    """Score ``source`` with the bundle (default: the champion) on Ray Data; the results as Parquet, the
    counts as metrics, the report as HTML and Markdown; returns the summary JSON."""
    import json
    from pathlib import Path

    from components.batch import step

    found = step.score(workload, source, bundle_uri, backend, actors, batch_size, explain, results.path,
                       report_html.path, report_md.path, run_name=Path(results.path).parent.name,
                       rayjob_namespace=rayjob_namespace, rayjob_image=rayjob_image, output_uri=output_uri)
    for name, value in step.metrics_of(found).items():
        summary.log_metric(name, value)
    results.metadata.update({"rows": found["rows"], "scored": found["scored"], "refused": found["refused"],
                             "format": "parquet"})
    print(f"score: {found['scored']} scored, {found['refused']} refused of {found['rows']}")
    return json.dumps({k: found[k] for k in ("workload", "rows", "scored", "refused", "refused_by_reason", "counts",
                                             "rows_per_s", "actors", "model")}, default=str)
