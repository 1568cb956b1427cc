"""The pipelines cover exactly the contract's workloads, in its order."""

import pytest

from bundle import workloads
from pipelines import catalog

pytestmark = pytest.mark.unit


def test_one_pipeline_per_catalog_workload_in_catalog_order():
    assert tuple(catalog.WORKLOADS) == workloads.NAMES
    for name in workloads.NAMES:
        assert catalog.load(name).PIPELINE_NAME


@pytest.mark.parametrize("modules", [{"heart-disease": "pipelines.heart_disease"},
                                     {**catalog.PIPELINE_MODULES, "extra": "pipelines.extra"}])
def test_a_workload_without_pipeline_or_a_pipeline_without_workload_is_refused(modules):
    with pytest.raises(RuntimeError, match="disagree: every workload needs exactly one pipeline"):
        catalog.in_catalog_order(modules, workloads.NAMES)
