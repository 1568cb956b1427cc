"""The KFP deploy component, shared by both training pipelines: after export, roll the new champion out
(cluster: canary on its InferenceService; local: restart ``clinops serve``). Returns the outcome as JSON."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects.

from kfp import dsl

from components.common.image import CLINOPS_IMAGE
from components.common.platform import with_platform_env


@dsl.component(base_image=CLINOPS_IMAGE, install_kfp_package=False)
def deploy(workload: str, export_json: str, mode: str, namespace: str, canary_percent: int, period_s: float,
           prometheus_url: str, limits: str) -> str:
    """Deploy the exported bundle when its version was promoted; tag the version with the outcome. A rollback
    leaves the run green (the old champion serves; the tags say why); a failed local restart fails the step."""
    import json

    from components.deploy.step import DeployRequest, parse_limits, run_deploy, summary

    request = DeployRequest(workload=workload, mode=mode, namespace=namespace, canary_percent=canary_percent,
                            period_s=period_s, interval_s=min(60.0, max(period_s / 10, 1.0)),
                            prometheus_url=prometheus_url, policy=parse_limits(limits))
    outcome = run_deploy(request, json.loads(export_json))
    print(f"deploy: {outcome['action']}: {'; '.join(outcome['reasons'])}")
    if outcome["action"] == "failed":
        raise RuntimeError(f"deploy failed: {'; '.join(outcome['reasons'])}")
    return summary(outcome)


def deploy_after(export, workload: str, mode, namespace, canary_percent, period_s, prometheus_url, limits):
    """In a pipeline: the deploy step after ``export`` (its JSON record is the input), unless ``mode`` is
    ``off``; never cached, with the cluster's MLflow and S3 settings."""
    with dsl.If(mode != "off", name="deploy-on"):
        task = deploy(workload=workload, export_json=export.output, mode=mode, namespace=namespace,
                      canary_percent=canary_percent, period_s=period_s, prometheus_url=prometheus_url,
                      limits=limits).set_display_name("deploy")
        task.set_caching_options(False)
        with_platform_env(task)
    return task
