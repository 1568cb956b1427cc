"""The workloads' pipelines, in the order ``clinops run`` runs them: the workload catalog
(:mod:`bundle.workloads`) names the workloads, this maps each to its pipeline module, which exposes
``PIPELINE`` (a ``@dsl.pipeline``), ``PROFILES`` (pipeline arguments per profile name) and
``DEFAULT_PROFILE``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from bundle import workloads

WORKLOADS: dict[str, str] = {name: f"pipelines.{name.replace('-', '_')}" for name in workloads.NAMES}


def load(workload: str) -> ModuleType:
    if workload not in WORKLOADS:
        raise KeyError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    return importlib.import_module(WORKLOADS[workload])


def profile_arguments(workload: str, profile: str) -> dict:
    module = load(workload)
    if profile not in module.PROFILES:
        raise KeyError(f"{workload} has no profile {profile!r}; known: {', '.join(module.PROFILES)}")
    return dict(module.PROFILES[profile])
