"""Three heart-disease pipelines started a second apart on one fresh home, as three
``make pipeline WORKLOAD=heart-disease PROFILE=quick`` would be (with a smaller search): every one succeeds, the registry
ends with exactly one champion, the champion pointer names the same version as the alias, and every
version's tags tell the truth. Before the registry locks, two or three of them failed in ``register``
(MLflow's schema set-up raced) and could leave the database half-migrated for good."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from bundle import champion as champion_pointer
from components.common import gate, registry
from components.common.settings import get_settings

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

RUNS = 3
MODEL = "heart-disease"
# the quick profile with a smaller search and fewer resamples: what races is registration and the gate,
# whatever the search's size
SMALL = ["--set", "n_trials=3", "--set", "bootstrap_resamples=200"]


def _clinops() -> list[str]:
    script = Path(sys.executable).with_name("clinops")
    return [str(script)] if script.is_file() else [sys.executable, "-c", "import sys; from pipelines.cli import main; "
                                                                         "sys.exit(main())"]


@pytest.mark.timeout(1800)
def test_three_concurrent_pipelines_on_a_fresh_home(clinops_home, tmp_path):
    assert not (clinops_home / "mlflow").exists()  # fresh: the schema gets created by the runs themselves
    env = {**os.environ, "CLINOPS_HOME": str(clinops_home)}
    logs = [tmp_path / f"run-{i}.log" for i in range(RUNS)]
    started = time.monotonic()
    procs = []
    for log in logs:
        with log.open("w") as out:
            procs.append(subprocess.Popen([*_clinops(), "pipeline", "heart-disease", "--profile", "quick", *SMALL],
                                          env=env, stdout=out, stderr=subprocess.STDOUT))
        time.sleep(1)
    codes = [p.wait(timeout=1700) for p in procs]
    print(f"{RUNS} concurrent heart-disease quick pipelines: {time.monotonic() - started:.0f} s wall")
    for code, log in zip(codes, logs, strict=True):
        assert code == 0, f"{log.name} exited {code}:\n{log.read_text()[-6000:]}"

    registry.connect()
    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert sorted(int(v.version) for v in versions) == list(range(1, RUNS + 1))
    tags = {str(v.version): dict(v.tags) for v in versions}
    holders = [str(v.version) for v in versions if registry.CHAMPION in client.get_model_version(MODEL, v.version).aliases]
    champion = registry.alias_version(MODEL, registry.CHAMPION)
    assert champion is not None and holders == [champion]
    assert gate.audit(tags, champion) == [], tags
    assert all(t["gate"] in ("promoted", "rejected") and "gate_compared_with" in t for t in tags.values())

    # the pointer serving follows names the alias's version (written under the registry lock by export)
    pointer = champion_pointer.read(get_settings().bundles, "heart-disease")
    assert pointer is not None, "no champion pointer was written"
    assert pointer.model_version == champion, (
        f"champion.json names v{pointer.model_version}, the registry's champion is v{champion}")
