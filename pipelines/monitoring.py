"""Monitoring pipeline: the drift sidecar's observation log for a period → the champion bundle's drift
reference → an Evidently data-drift report (HTML, JSON, Markdown in the KFP UI) → retraining when drift
is found and the run allows it. One pipeline for every workload (``workload`` is a parameter); runs
locally with kfp.local (:func:`run`) or compiles for Kubeflow Pipelines (a recurring run)."""

from kfp import dsl

from components.common.platform import with_platform_env
from components.monitoring import component as c
from components.monitoring.reduce import DEFAULT_MAX_DIMS
from components.monitoring.report import DEFAULT_DRIFT_SHARE

PIPELINE_NAME = "drift-monitoring"
NAME = "monitoring"  # its compiled file: pipelines/compiled/monitoring.yaml
LAST_RUN = "last-monitor.json"


@dsl.pipeline(name=PIPELINE_NAME, description="Compare a period of logged inference observations with the "
              "champion bundle's drift reference (Evidently) and retrain on drift when allowed.")
def monitoring_pipeline(
    workload: str = "heart-disease",
    hours: float = 24.0,
    since: float = 0.0,
    until: float = 0.0,
    log_dir: str = "",
    bundle_uri: str = "",
    store: str = "",
    drift_share: float = DEFAULT_DRIFT_SHARE,
    max_dims: int = DEFAULT_MAX_DIMS,
    retrain_on_drift: bool = False,
    kfp_host: str = "",
    kfp_namespace: str = "",
    profile: str = "quick",
    launcher: str = "",
) -> str:
    reference = c.load_reference(workload=workload, bundle_uri=bundle_uri, store=store
                                 ).set_display_name("load reference")
    observed = c.read_observations(workload=workload, log_dir=log_dir, hours=hours, since=since, until=until,
                                   columns=reference.outputs["columns"]).set_display_name("read observations")
    report = c.drift_report(workload=workload, model=reference.outputs["model"], columns=reference.outputs["columns"],
                            period=observed.outputs["period"], counts=observed.outputs["counts"],
                            reference=reference.outputs["reference"], current=observed.outputs["current"],
                            drift_share=drift_share, max_dims=max_dims).set_display_name("drift report")
    trigger = c.retrain(workload=workload, drift=report.outputs["drift"], retrain_on_drift=retrain_on_drift,
                        summary=report.outputs["summary"], kfp_host=kfp_host, kfp_namespace=kfp_namespace,
                        profile=profile, launcher=launcher).set_display_name("retrain on drift")
    # "the last N hours" changes with every run, and a retrain is an action: never answer from the cache.
    for task in (observed, report, trigger):
        task.set_caching_options(False)
    with_platform_env(reference, trigger)
    return trigger.output


PIPELINE = monitoring_pipeline


def run(workload: str, hours: float = 24.0, retrain_on_drift: bool = False, **overrides) -> dict:
    """Run the monitoring pipeline locally (kfp.local, the runner of ``make pipeline``); returns (and
    writes to ``$CLINOPS_HOME/pipelines/<workload>/last-monitor.json``) the summary with the report's
    artifact paths, the retrain decision and its outcome."""
    import os

    from components.common.settings import reload_settings
    from pipelines.local import _init_kfp_local, recorded_run

    settings = reload_settings()
    os.environ["CLINOPS_HOME"] = str(settings.home)  # component subprocesses read the same home
    out_dir = settings.pipeline_dir(workload)
    out_dir.mkdir(parents=True, exist_ok=True)
    _init_kfp_local(out_dir / "monitor-root")
    arguments = {"workload": workload, "hours": float(hours), "retrain_on_drift": retrain_on_drift} | overrides
    for name in ("since", "until", "drift_share"):  # KFP refuses an int for a float parameter
        if name in arguments:
            arguments[name] = float(arguments[name])
    record: dict = {"workload": workload, "arguments": arguments}
    return recorded_run(PIPELINE, arguments, record, out_dir / LAST_RUN, f"{workload}-monitor")
