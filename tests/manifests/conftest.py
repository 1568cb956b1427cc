"""Every kustomize entry point rendered once per session (``kubectl kustomize`` costs ~0.3 s each)."""

from __future__ import annotations

import pytest
from support.manifests import OVERLAYS, find  # noqa: F401 - the fixtures below use OVERLAYS

from pipelines import manifests


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    return manifests.render_all()


@pytest.fixture(scope="session")
def overlays(rendered) -> dict[str, list[dict]]:
    return {name: rendered[f"kustomize/overlays/{name}"] for name in OVERLAYS}
