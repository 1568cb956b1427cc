"""Retraining on drift: a decision (pure, from the report's verdict and the run's permission) kept apart
from the action that starts a workload's training pipeline.

The action starts the same pipeline a person would: locally the ``clinops pipeline <workload>`` command
(``make pipeline``'s runner, kfp.local) as a child process; in a cluster a run of the compiled pipeline
package through ``kfp.Client``. Both go through the pipeline's entry points rather than importing them:
components never import ``pipelines/``.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
COMPILED_DIR = PROJECT / "pipelines" / "compiled"  # what `make compile` writes and the image ships


@dataclass(frozen=True)
class Decision:
    retrain: bool
    reason: str

    def to_dict(self) -> dict:
        return {"retrain": self.retrain, "reason": self.reason}


def decide(drift: bool, allowed: bool) -> Decision:
    if not drift:
        return Decision(False, "no drift found")
    if not allowed:
        return Decision(False, "drift found; retraining not allowed by this run (retrain_on_drift is off)")
    return Decision(True, "drift found and retraining allowed")


def act(decision: Decision, start: Callable[[], str]) -> str:
    """``start()`` when the decision says so; what happened, in one line."""
    return start() if decision.retrain else f"retraining not started: {decision.reason}"


def local_command(workload: str, profile: str = "quick", launcher: str = "") -> list[str]:
    """The ``clinops pipeline`` command line; ``launcher`` replaces ``python -m pipelines.cli``."""
    prefix = shlex.split(launcher) if launcher else [sys.executable, "-m", "pipelines.cli"]
    return [*prefix, "pipeline", workload, "--profile", profile]


def run_locally(workload: str, profile: str = "quick", launcher: str = "") -> str:
    command = local_command(workload, profile, launcher)
    print(f"retrain: {shlex.join(command)}", flush=True)
    done = subprocess.run(command, cwd=PROJECT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"retraining {workload} failed: `{shlex.join(command)}` exited with {done.returncode}")
    return f"retraining finished: local run of the {workload} pipeline ({profile} profile)"


def submit_to_kfp(workload: str, host: str, namespace: str = "", run_name: str = "",
                  package: Path | None = None) -> str:
    """Start a run of the workload's compiled training pipeline on the KFP server at ``host`` (in a pod
    the client finds the projected service-account token by itself)."""
    import kfp

    package = package or COMPILED_DIR / f"{workload}.yaml"
    if not package.is_file():
        raise FileNotFoundError(f"no compiled pipeline for {workload} at {package}: run `make compile`")
    client = kfp.Client(host=host, namespace=namespace or "kubeflow")
    run = client.create_run_from_pipeline_package(str(package), arguments={}, run_name=run_name or f"{workload}-retrain",
                                                  experiment_name=workload, namespace=namespace or None)
    return f"retraining started: KFP run {run.run_id} of {package.name} on {host}"


def start_training(workload: str, kfp_host: str = "", namespace: str = "", profile: str = "quick",
                   launcher: str = "") -> str:
    """In a cluster when a KFP endpoint is given, else on this machine."""
    if kfp_host:
        return submit_to_kfp(workload, kfp_host, namespace)
    return run_locally(workload, profile, launcher)
