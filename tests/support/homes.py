"""Pieces of the private homes and temporary folders that the tests give the code under test: shared by
the root conftest's fixtures and by module-scoped ones (the notebooks' shared home)."""

from __future__ import annotations

import secrets
from pathlib import Path

# what may stay in a temporary folder: Ray's session folders, torch's compile cache, MLflow's empty
# database-initialisation lock files (kept across runs on purpose)
TEMP_EXEMPT = ("ray", "_ray_", "torchinductor_", "db_init_lock-")


def _short_link(target: Path, folder: Path) -> Path:
    """A new symbolic link ``folder/clinops-tmp-<random>`` to ``target``."""
    while True:
        link = folder / f"clinops-tmp-{secrets.token_hex(4)}"
        try:
            link.symlink_to(target, target_is_directory=True)
            return link
        except FileExistsError:
            continue


def _point_mlflow_at(uri: str, monkeypatch) -> None:
    """Set MLflow's tracking and registry URI for this test, in the process and in the environment.

    ``mlflow.set_tracking_uri`` / ``set_registry_uri`` also write ``MLFLOW_*_URI`` into os.environ,
    where child processes (kfp.local tasks, notebook kernels) would inherit a server that is gone by
    then: setting both through monkeypatch first makes the teardown undo them.
    """
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
