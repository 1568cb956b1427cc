"""Several runs register and gate at the same moment on one fresh home (SQLite MLflow): all succeed,
the schema is set up once and intact, exactly one champion, and every version's tags tell the truth.

Each run is its own process, like a kfp.local task: it does what the register and gate steps do,
with a tiny scikit-learn model and a given test ROC-AUC. The processes wait for each other after
their imports, so they reach MLflow's schema set-up together."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import mlflow
import pytest

from components.common import gate, registry
from components.common.settings import get_settings

pytestmark = pytest.mark.integration

MODEL = "concurrency-check"

CHILD = r"""
import json, os, sys, time
from pathlib import Path

barrier, n, score = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
import mlflow
import numpy as np
from sklearn.linear_model import LogisticRegression

from components.common import gate, registry

(barrier / f"ready-{os.getpid()}").touch()
deadline = time.monotonic() + 120
while len(list(barrier.glob("ready-*"))) < n and time.monotonic() < deadline:
    time.sleep(0.005)

registry.configure("concurrency")
rng = np.random.default_rng(int(score * 1000))
x = rng.normal(size=(40, 3))
model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
registered = registry.log_and_register(
    "concurrency", sys.argv[4], "run", {"score": score}, {"roc_auc": score},
    lambda name: mlflow.sklearn.log_model(model, name="model", registered_model_name=name))
decision = gate.run_gate(
    sys.argv[4], registered.version, {"roc_auc": score}, {"roc_auc": 0.5},
    lambda uri: registry.version_metric(sys.argv[4], uri.rsplit("/", 1)[1], "roc_auc"))
print("RESULT " + json.dumps({"version": registered.version, "score": score, "promoted": decision.promote,
                              "compared_with": decision.champion_version}), flush=True)
"""


def _start(barrier, n: int, score: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(barrier), str(n), str(score), MODEL],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def _registry_state() -> tuple[str | None, dict[str, dict[str, str]], dict[str, list[str]]]:
    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name='{MODEL}'")
    tags = {str(v.version): dict(v.tags) for v in versions}
    # search results leave aliases out: read each version
    aliases = {str(v.version): list(client.get_model_version(MODEL, v.version).aliases) for v in versions}
    return registry.alias_version(MODEL, registry.CHAMPION), tags, aliases


def _check_database(path) -> None:
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert not {t for t in tables if t.startswith("_alembic_tmp")}, tables  # no half-done migration
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchall()
    from mlflow.store.db.utils import _get_latest_schema_revision

    assert revision[0] == _get_latest_schema_revision()


def test_concurrent_runs_on_a_fresh_home_register_and_gate_truthfully(clinops_home, tmp_path):
    scores = [0.90, 0.95, 0.85, 0.92]
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    started = time.monotonic()
    results = [_finish(p) for p in [_start(barrier, len(scores), s) for s in scores]]
    print(f"{len(scores)} concurrent runs: {time.monotonic() - started:.1f} s")

    assert sorted(int(r["version"]) for r in results) == [1, 2, 3, 4]  # one version each
    by_version = {r["version"]: r for r in results}
    # each gate was judged against the champion of its moment, and judged right
    for r in results:
        if r["compared_with"] is None:
            assert r["promoted"]
        else:
            assert r["promoted"] == (r["score"] >= by_version[r["compared_with"]]["score"]), r

    registry.connect()
    champion, tags, aliases = _registry_state()
    # the best score wins whatever the order: whoever held the alias before it scored lower
    assert by_version[champion]["score"] == max(scores)
    assert [v for v, a in aliases.items() if registry.CHAMPION in a] == [champion]
    assert gate.audit(tags, champion) == []
    for r in results:
        own = tags[r["version"]]
        assert own["gate"] == ("promoted" if r["promoted"] else "rejected")
        assert own["gate_compared_with"] == (r["compared_with"] or "none")
    promoted = [v for v, t in tags.items() if t["gate"] == "promoted"]
    assert [v for v in promoted if "superseded_by" not in tags[v]] == [champion]

    # the database is whole, at MLflow's latest schema, and a later run on it succeeds
    _check_database(get_settings().home / "mlflow" / "mlflow.db")
    late = _finish(_start(barrier, 1, 0.99))
    assert late["version"] == "5" and late["promoted"] and late["compared_with"] == champion
    champion_after, tags, _ = _registry_state()
    assert champion_after == "5" and tags[champion]["superseded_by"] == "5"
    assert gate.audit(tags, "5") == []
    _check_database(get_settings().home / "mlflow" / "mlflow.db")


def test_connect_builds_both_stores_inside_the_store_lock_and_clients_reuse_them(clinops_home, monkeypatch):
    import contextlib

    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    from components.common import locks

    held, built = [], []
    real_lock = locks.store_lock

    @contextlib.contextmanager
    def recording_lock(uri, timeout=None):
        with real_lock(uri, timeout):
            held.append(uri)
            try:
                yield
            finally:
                held.pop()

    monkeypatch.setattr(registry.locks, "store_lock", recording_lock)
    for kind, cls in (("tracking", TrackingStore), ("registry", RegistryStore)):
        def init(self, *args, _real=cls.__init__, _kind=kind, **kwargs):
            built.append((_kind, bool(held)))  # migrations run in here
            _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", init)

    registry.connect()
    assert sorted(built) == [("registry", True), ("tracking", True)]
    client = mlflow.MlflowClient()  # MLflow caches stores per process: clients build none of their own
    client.search_experiments()
    client.search_registered_models()
    registry.configure("reuse")
    assert len(built) == 2
