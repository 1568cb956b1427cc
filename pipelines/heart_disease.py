"""Heart-disease training pipeline: ingest → validate → split → train (Optuna) → evaluate →
register (MLflow) → gate → export → deploy (canary in a cluster, a restart of ``clinops serve`` locally). Runs locally with kfp.local or compiles for Kubeflow Pipelines."""


from kfp import dsl

from components.common.platform import with_platform_env
from components.deploy.component import deploy_after
from components.deploy.step import DEFAULT_LIMITS, DEFAULT_PROMETHEUS_URL
from components.heart_disease import component as c
from components.heart_disease.data import DEFAULT_SOURCE

PIPELINE_NAME = "heart-disease-training"
DEFAULT_PROFILE = "quick"
PROFILES: dict[str, dict] = {
    "quick": {"n_trials": 12, "cv_folds": 5, "target_sensitivity": 0.9, "bootstrap_resamples": 1000},
    "full": {"n_trials": 100, "cv_folds": 5, "target_sensitivity": 0.9, "bootstrap_resamples": 2000},
}


@dsl.pipeline(name=PIPELINE_NAME, description="Train, evaluate, register, gate and export the "
              "heart-disease risk model on the UCI data.")
def heart_disease_pipeline(
    source: str = DEFAULT_SOURCE,
    test_size: float = 0.2,
    seed: int = 42,
    holdout_sites: str = "",
    n_trials: int = 12,
    cv_folds: int = 5,
    target_sensitivity: float = 0.9,
    bootstrap_resamples: int = 1000,
    floors: str = "roc_auc=0.85",
    model_name: str = "heart-disease",
    experiment: str = "heart-disease",
    store: str = "",
    deploy_mode: str = "auto",  # off | auto (cluster in a pod, else the local stack) | cluster | local
    deploy_namespace: str = "",  # "" = the run's namespace
    canary_percent: int = 10,
    canary_period_s: float = 600.0,
    prometheus_url: str = DEFAULT_PROMETHEUS_URL,
    canary_limits: str = DEFAULT_LIMITS,
) -> str:
    ingest = c.ingest(source=source).set_display_name("ingest")
    validate = c.validate(data=ingest.outputs["data"]).set_display_name("validate")
    split = c.split(data=validate.outputs["clean"], test_size=test_size, seed=seed,
                    holdout_sites=holdout_sites).set_display_name("split")
    train = c.train(train=split.outputs["train"], n_trials=n_trials, seed=seed,
                    cv_folds=cv_folds).set_display_name("train (Optuna)")
    train.set_cpu_limit("2").set_memory_limit("4G")
    evaluate = c.evaluate(model=train.outputs["model"], train=split.outputs["train"], test=split.outputs["test"],
                          train_info=train.outputs["Output"], target_sensitivity=target_sensitivity,
                          bootstrap_resamples=bootstrap_resamples, seed=seed).set_display_name("evaluate")
    register = c.register(model=train.outputs["model"], train=split.outputs["train"],
                          evaluation=evaluate.outputs["evaluation"], study=train.outputs["study"],
                          train_info=train.outputs["Output"], metrics_json=evaluate.outputs["Output"],
                          model_name=model_name, experiment=experiment, seed=seed).set_display_name("register")
    gate = c.gate(model_name=model_name, version=register.outputs["version"], test=split.outputs["test"],
                  evaluation=evaluate.outputs["evaluation"], metrics_json=evaluate.outputs["Output"],
                  floors=floors).set_display_name("gate")
    export = c.export(model=train.outputs["model"], train=split.outputs["train"],
                      evaluation=evaluate.outputs["evaluation"], model_name=model_name,
                      version=register.outputs["version"], run_id=register.outputs["run_id"],
                      metrics_json=evaluate.outputs["Output"], promoted=gate.outputs["promoted"],
                      reasons=gate.outputs["reasons"], store=store).set_display_name("export")
    # Registering, promoting and exporting change the world: never answer them from the cache.
    for task in (register, gate, export):
        task.set_caching_options(False)
    with_platform_env(ingest, train, register, gate, export)
    deploy_after(export, "heart-disease", deploy_mode, deploy_namespace, canary_percent, canary_period_s,
                 prometheus_url, canary_limits)
    return export.output


PIPELINE = heart_disease_pipeline
