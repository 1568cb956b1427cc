"""Run a pipeline on this machine with ``kfp.local`` and record the outcome in ``last-run.json``."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from unittest import mock

from components.common.settings import reload_settings
from pipelines import catalog

LAST_RUN = "last-run.json"


def _init_kfp_local(pipeline_root: Path) -> None:
    from kfp import local

    pipeline_root.mkdir(parents=True, exist_ok=True)
    # Locally every component runs in this interpreter, which is the image's environment: say it once.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom")
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner")
    warnings.filterwarnings("ignore", message=".*kubernetes.*", module="kfp")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
               raise_on_error=True)


@contextlib.contextmanager
def _scratch_tmpdir(workload: str):
    """One temporary folder for all the run's tasks, removed when the run ends.

    A task's launcher writes its source into a fresh ``mktemp -d`` folder, and libraries download
    or copy into the temporary folder: in a pod that is discarded with the pod, here it would pile
    up run after run. Ray keeps its session folder (and socket paths, which have a length limit)
    where it would have been."""
    ray_tmp = os.environ.get("RAY_TMPDIR", tempfile.gettempdir())
    with tempfile.TemporaryDirectory(prefix=f"clinops-{workload}-run-", ignore_cleanup_errors=True) as scratch, \
            mock.patch.dict(os.environ, {"TMPDIR": scratch, "RAY_TMPDIR": ray_tmp}):
        yield scratch


def run(workload: str, profile: str = "quick", **overrides) -> dict:
    """Run ``workload``'s pipeline locally; returns (and writes) the last-run record.

    The record always has ``status``; on success also ``metrics``, ``model_name``,
    ``model_version``, ``promoted`` and ``bundle_uri`` (what the export step returned).
    """
    settings = reload_settings()
    # Component subprocesses inherit the environment: give them the same absolute home.
    os.environ["CLINOPS_HOME"] = str(settings.home)
    module = catalog.load(workload)
    arguments = catalog.profile_arguments(workload, profile) | overrides
    out_dir = settings.pipeline_dir(workload)
    out_dir.mkdir(parents=True, exist_ok=True)
    _init_kfp_local(out_dir / "root")

    record: dict = {"workload": workload, "profile": profile, "arguments": arguments}
    return recorded_run(module.PIPELINE, arguments, record, out_dir / LAST_RUN, workload)


def recorded_run(pipeline, arguments: dict, record: dict, record_path: Path, scratch: str, **on_success) -> dict:
    """Run ``pipeline(**arguments)`` with kfp.local in a scratch temporary folder; ``record`` gains the
    pipeline's JSON output, ``status`` (and ``error``), ``on_success`` when it succeeds, and its times, and
    is written to ``record_path`` whatever happens."""
    record["started_at"] = time.time()
    try:
        with _scratch_tmpdir(scratch):
            task = pipeline(**arguments)
        record |= json.loads(task.output) | {"status": "succeeded"} | on_success
    except Exception as err:
        record["status"] = "failed"
        record["error"] = f"{type(err).__name__}: {err}"
        raise
    finally:
        record["finished_at"] = time.time()
        record["wall_seconds"] = round(record["finished_at"] - record["started_at"], 1)
        record_path.write_text(json.dumps(record, indent=2, default=str))
    return record


def last_run(workload: str) -> dict | None:
    path = reload_settings().pipeline_dir(workload) / LAST_RUN
    return json.loads(path.read_text()) if path.is_file() else None
