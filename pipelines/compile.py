"""Compile every pipeline to KFP IR YAML under ``pipelines/compiled/`` (uploadable to a KFP 2.x dashboard)."""

from __future__ import annotations

from pathlib import Path

from pipelines import catalog

COMPILED_DIR = Path(__file__).resolve().parent / "compiled"


def compile_pipeline(name: str, out_dir: Path = COMPILED_DIR) -> Path:
    """Compile a workload's training pipeline or a shared one (``monitoring``) to ``<out_dir>/<name>.yaml``."""
    from kfp import compiler

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.yaml"
    compiler.Compiler().compile(catalog.load_pipeline(name).PIPELINE, package_path=str(path))
    return path


def compile_workload(workload: str, out_dir: Path = COMPILED_DIR) -> Path:
    return compile_pipeline(workload, out_dir)


def compile_all(out_dir: Path = COMPILED_DIR) -> list[Path]:
    return [compile_pipeline(name, out_dir) for name in catalog.COMPILED]
