"""MLflow tracking and the model registry: one run per training, one registered version per run,
aliases (``champion``, ``challenger``) instead of the deprecated stages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from components.common.settings import get_settings

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass
class RegisteredVersion:
    model_name: str
    version: str
    run_id: str
    model_uri: str


def configure(experiment: str) -> str:
    """Point MLflow at the configured tracking URI and make sure ``experiment`` exists; returns its id."""
    import mlflow

    settings = get_settings()
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient()
    existing = client.get_experiment_by_name(experiment)
    if existing is not None:
        mlflow.set_experiment(experiment)
        return existing.experiment_id
    # A local database keeps its artifacts under CLINOPS_HOME (not ./mlruns); a server decides itself.
    local = uri.startswith(("sqlite:", "file:")) or "://" not in uri
    experiment_id = client.create_experiment(
        experiment, artifact_location=settings.mlflow_artifact_root + f"/{experiment}" if local else None
    )
    mlflow.set_experiment(experiment)
    return experiment_id


def log_and_register(
    experiment: str,
    model_name: str,
    run_name: str,
    params: dict,
    metrics: dict[str, float],
    log_model: Callable[[str], object],
    artifacts: list[Path] = (),
    tags: dict[str, str] | None = None,
) -> RegisteredVersion:
    """One MLflow run: params, metrics, artifact files, and the model logged by ``log_model(model_name)``
    (which must register it, e.g. ``mlflow.sklearn.log_model(..., registered_model_name=model_name)``)."""
    import mlflow

    configure(experiment)
    with mlflow.start_run(run_name=run_name, tags=tags or {}) as run:
        mlflow.log_params({k: _param(v) for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        for path in artifacts:
            path = Path(path)
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=path.name)
            elif path.is_file():
                mlflow.log_artifact(str(path))
        info = log_model(model_name)
        version = getattr(info, "registered_model_version", None)
        if version is None:
            raise RuntimeError(f"log_model did not register {model_name}")
        return RegisteredVersion(model_name, str(version), run.info.run_id, f"models:/{model_name}/{version}")


def _param(value):
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def alias_version(model_name: str, alias: str) -> str | None:
    """The version carrying ``alias``, or ``None``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def set_alias(model_name: str, alias: str, version: str) -> None:
    import mlflow

    mlflow.MlflowClient().set_registered_model_alias(model_name, alias, str(version))


def tag_version(model_name: str, version: str, tags: dict[str, str]) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, str(value))


def version_metric(model_name: str, version: str, metric: str) -> float | None:
    """A metric of the run that produced a registered version."""
    import mlflow

    client = mlflow.MlflowClient()
    run_id = client.get_model_version(model_name, str(version)).run_id
    return client.get_run(run_id).data.metrics.get(metric) if run_id else None
