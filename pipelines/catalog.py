"""The workloads this project trains and serves, in the order ``clinops run`` runs them.

Each value names a module exposing ``PIPELINE`` (a ``@dsl.pipeline``), ``PROFILES`` (pipeline
arguments per profile name) and ``DEFAULT_PROFILE``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

WORKLOADS: dict[str, str] = {
    "heart-disease": "pipelines.heart_disease",
    "pneumonia": "pipelines.pneumonia",
}


def load(workload: str) -> ModuleType:
    if workload not in WORKLOADS:
        raise KeyError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    return importlib.import_module(WORKLOADS[workload])


def profile_arguments(workload: str, profile: str) -> dict:
    module = load(workload)
    if profile not in module.PROFILES:
        raise KeyError(f"{workload} has no profile {profile!r}; known: {', '.join(module.PROFILES)}")
    return dict(module.PROFILES[profile])
