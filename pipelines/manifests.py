"""Render every kustomize entry point (``kustomize/**`` and ``manifests/**`` folders holding a
``kustomization.yaml``) with ``kubectl kustomize``; a broken one fails."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def entry_points(root: Path = REPO) -> list[Path]:
    found = []
    for top in ("kustomize", "manifests"):
        found += sorted(p.parent for p in (root / top).rglob("kustomization.yaml"))
    return found


def render(folder: Path) -> str:
    kubectl = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")
    result = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {folder.relative_to(REPO)} failed:\n{result.stderr}")
    return result.stdout


def main() -> int:
    points = entry_points()
    if not points:
        print("no kustomize entry points yet")
        return 0
    failed = 0
    for folder in points:
        try:
            docs = render(folder).count("\nkind: ") + 1
            print(f"ok   {folder.relative_to(REPO)} ({docs} objects)")
        except RuntimeError as err:
            failed += 1
            print(f"FAIL {err}", file=sys.stderr)
    return 1 if failed else 0
