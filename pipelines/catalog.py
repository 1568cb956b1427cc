"""The workloads' pipelines, in the order ``clinops run`` runs them: the workload catalog
(:mod:`bundle.workloads`) names the workloads, this maps each to its pipeline module, which exposes
``PIPELINE`` (a ``@dsl.pipeline``), ``PROFILES`` (pipeline arguments per profile name) and
``DEFAULT_PROFILE``. Pipelines that watch every workload rather than train one (monitoring) are listed
apart, so the workload mapping stays one training pipeline per workload; ``make compile`` compiles both.
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


# name → module (or ``module:attribute``) exposing ``PIPELINE`` and ``PIPELINE_NAME``; compiled to
# pipelines/compiled/<name>.yaml
SHARED_PIPELINES: dict[str, str] = {
    "monitoring": "pipelines.monitoring",
    # batch scoring, one pipeline per workload, defined together
    "heart-disease-batch": "pipelines.batch_scoring:HEART_DISEASE",
    "pneumonia-batch": "pipelines.batch_scoring:PNEUMONIA",
}
COMPILED: tuple[str, ...] = (*WORKLOADS, *SHARED_PIPELINES)


def load_pipeline(name: str) -> ModuleType | object:
    """A workload's training pipeline module or a shared pipeline's module, by its compiled name."""
    if name in SHARED_PIPELINES:
        module, _, attribute = SHARED_PIPELINES[name].partition(":")
        loaded = importlib.import_module(module)
        return getattr(loaded, attribute) if attribute else loaded
    return load(name)


def load(workload: str) -> ModuleType:
    if workload not in WORKLOADS:
        raise KeyError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    return importlib.import_module(WORKLOADS[workload])


def profile_arguments(workload: str, profile: str) -> dict:
    module = load(workload)
    if profile not in module.PROFILES:
        raise KeyError(f"{workload} has no profile {profile!r}; known: {', '.join(module.PROFILES)}")
    return dict(module.PROFILES[profile])
