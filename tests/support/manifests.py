"""What the manifest tests share: the overlays, and one object out of a rendered entry point."""

from __future__ import annotations

OVERLAYS = ("local", "staging", "production")


def find(objects: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)
