"""Every kustomize entry point rendered once per session (``kubectl kustomize`` costs ~0.3 s each)."""

from __future__ import annotations

import pytest

from pipelines import manifests

OVERLAYS = ("local", "staging", "production")


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    return manifests.render_all()


@pytest.fixture(scope="session")
def overlays(rendered) -> dict[str, list[dict]]:
    return {name: rendered[f"kustomize/overlays/{name}"] for name in OVERLAYS}


def find(objects: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)
