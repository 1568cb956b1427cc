"""The workloads' pipelines, in the order ``clinops run`` runs them: the workload catalog
(:mod:`bundle.workloads`) names the workloads, this maps each to its pipeline module, which exposes
``PIPELINE`` (a ``@dsl.pipeline``), ``PROFILES`` (pipeline arguments per profile name) and
``DEFAULT_PROFILE``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from bundle import workloads

PIPELINE_MODULES: dict[str, str] = {
    "heart-disease": "pipelines.heart_disease",
    "pneumonia": "pipelines.pneumonia",
}


def in_catalog_order(modules: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """``modules`` in the catalog's order; raises when a workload has no pipeline or a pipeline no workload."""
    if set(modules) != set(names):
        raise RuntimeError(f"the workload catalog ({', '.join(names)}) and the pipelines "
                           f"({', '.join(modules)}) disagree: every workload needs exactly one pipeline")
    return {name: modules[name] for name in names}


WORKLOADS: dict[str, str] = in_catalog_order(PIPELINE_MODULES, workloads.NAMES)


def load(workload: str) -> ModuleType:
    if workload not in WORKLOADS:
        raise KeyError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    return importlib.import_module(WORKLOADS[workload])


def profile_arguments(workload: str, profile: str) -> dict:
    module = load(workload)
    if profile not in module.PROFILES:
        raise KeyError(f"{workload} has no profile {profile!r}; known: {', '.join(module.PROFILES)}")
    return dict(module.PROFILES[profile])
