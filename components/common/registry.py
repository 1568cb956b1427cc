"""MLflow tracking and the model registry: one run per training, one registered version per run,
aliases (``champion``, ``challenger``) instead of the deprecated stages.

Many runs may share one registry at the same time (three ``make pipeline`` on one home, pods of a
cluster). :func:`connect` creates MLflow's stores once per process under
:func:`~components.common.locks.store_lock`, so a fresh SQLite database is migrated by exactly one
process; whatever reads and then moves the ``champion`` alias does so under
:func:`~components.common.locks.registry_lock` (see :mod:`components.common.gate`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from components.common import locks
from components.common.settings import get_settings

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass
class RegisteredVersion:
    model_name: str
    version: str
    run_id: str
    model_uri: str


_connected: set[str] = set()


def connect() -> str:
    """Point MLflow at the configured tracking URI (tracking and registry) and make sure its
    database is ready; returns the URI.

    MLflow builds a ``SqlAlchemyStore`` for tracking and another for the model registry the first
    time a client needs them, caches both per process (keyed by URI), and each constructor runs the
    alembic migrations when it finds tables missing, with no lock. Here both are built at once,
    under the store lock, so the first process on a fresh database migrates it while the others
    wait, then find it complete; the cached stores are the ones every later client call uses.
    """
    import mlflow

    uri = get_settings().tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if uri not in _connected:
        from mlflow.tracking._model_registry import utils as registry_stores
        from mlflow.tracking._tracking_service import utils as tracking_stores

        with locks.store_lock(uri):
            tracking_stores._get_store(uri)  # = MlflowClient()._tracking_client.store
            registry_stores._get_store(uri, uri)  # = MlflowClient()._get_registry_client().store
        _connected.add(uri)
    return uri


def configure(experiment: str) -> str:
    """Point MLflow at the configured tracking URI and make sure ``experiment`` exists; returns its id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    settings = get_settings()
    uri = connect()
    client = mlflow.MlflowClient()
    with locks.store_lock(uri):  # get-or-create, once among concurrent runs on one database
        existing = client.get_experiment_by_name(experiment)
        if existing is not None:
            experiment_id = existing.experiment_id
        else:
            # A local database keeps its artifacts under CLINOPS_HOME (not ./mlruns); a server decides itself.
            local = uri.startswith(("sqlite:", "file:")) or "://" not in uri
            try:
                experiment_id = client.create_experiment(
                    experiment, artifact_location=settings.mlflow_artifact_root + f"/{experiment}" if local else None
                )
            except MlflowException as err:  # another run on the same server created it first
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment_id = client.get_experiment_by_name(experiment).experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
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
    """The version carrying ``alias``, or ``None`` when the model or the alias does not exist.
    Any other failure (database locked, server down) is raised: the gate must not read it as
    "no champion"."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(model_name, alias).version)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def is_champion(model_name: str, version: str) -> bool:
    """Whether the alias ``champion`` names ``version`` right now. Call it under
    ``locks.registry_lock(model_name)`` (or use :func:`champion_guard`) so the answer still holds
    for what is done with it."""
    connect()
    return alias_version(model_name, CHAMPION) == str(version)


@contextlib.contextmanager
def champion_guard(model_name: str, version: str) -> Iterator[bool]:
    """Hold the registry lock of ``model_name`` and yield whether ``version`` is still the champion.

    What needs to follow the alias (the champion pointer) is written inside::

        with registry.champion_guard(model_name, version) as still_champion:
            if still_champion:
                write_champion_pointer(...)

    so a run whose version was superseded while it exported leaves the newer champion's pointer alone.
    """
    with locks.registry_lock(model_name):
        yield is_champion(model_name, version)


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
