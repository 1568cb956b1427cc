"""Publish a serving bundle to the store and keep the champion pointer in step with the registry.

The pointer (``<store>/<workload>/champion.json``) is written under the registry lock, and only while
the registry's ``champion`` alias still names this version: with concurrent runs, a version promoted
and then superseded by another run's gate before its own export must not move the pointer back.
"""

from __future__ import annotations

from pathlib import Path

from bundle import champion, open_bundle
from components.common import registry, storage
from components.common.settings import get_settings


def publish(local_dir: Path, workload: str, version: str, promoted: bool, store: str | None = None) -> str:
    """Copy a verified bundle to ``<store>/<workload>/<version>``; move the pointer when it was promoted
    and is still the champion. Returns the bundle's URI."""
    manifest = open_bundle(local_dir, workload).manifest  # never publish what a server would refuse
    store = store or get_settings().bundles
    uri = storage.upload_dir(Path(local_dir), champion.bundle_uri(store, workload, version))
    if promoted:
        write_champion_pointer(workload, manifest.model_name, version, uri, store)
    return uri


def write_champion_pointer(workload: str, model_name: str, version: str, uri: str, store: str | None = None) -> bool:
    """Point ``champion.json`` at ``uri`` if ``model_name`` v``version`` holds the alias; returns whether it did."""
    with registry.champion_guard(model_name, version) as still_champion:
        if not still_champion:
            print(f"publish: {model_name} v{version} is no longer the champion; pointer left as it is")
            return False
        champion.write(store or get_settings().bundles,
                       champion.ChampionPointer(workload, model_name, str(version), uri), get_settings().s3)
    return True


def champion_uri(workload: str, store: str | None = None) -> str | None:
    """The bundle URI of the current champion, or ``None`` when nothing was promoted yet."""
    pointer = champion.read(store or get_settings().bundles, workload, get_settings().s3)
    return pointer.bundle_uri if pointer else None
