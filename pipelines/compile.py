"""Compile every pipeline to KFP IR YAML under ``pipelines/compiled/`` (uploadable to a KFP 2.x dashboard).

A pipeline module may define compile-time profiles (``COMPILE_PROFILES`` and ``build_pipeline``) for
what run parameters cannot set, such as a step's accelerator: ``python -m pipelines.compile pneumonia
--profile gpu`` writes ``pipelines/compiled/pneumonia-gpu.yaml``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines import catalog

COMPILED_DIR = Path(__file__).resolve().parent / "compiled"


def compile_pipeline(name: str, out_dir: Path = COMPILED_DIR, profile: str | None = None) -> Path:
    """Compile a workload's training pipeline or a shared one (``monitoring``) to ``<out_dir>/<name>.yaml``,
    or with a compile-time ``profile`` to ``<out_dir>/<name>-<profile>.yaml``."""
    from kfp import compiler

    module = catalog.load_pipeline(name)
    if profile is None:
        pipeline, path = module.PIPELINE, out_dir / f"{name}.yaml"
    else:
        profiles = getattr(module, "COMPILE_PROFILES", {})
        if profile not in profiles:
            raise KeyError(f"{name} has no compile profile {profile!r}; known: {', '.join(profiles) or 'none'}")
        pipeline, path = module.build_pipeline(profiles[profile]), out_dir / f"{name}-{profile}.yaml"
    out_dir.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline, package_path=str(path))
    return path


def compile_workload(workload: str, out_dir: Path = COMPILED_DIR) -> Path:
    return compile_pipeline(workload, out_dir)


def compile_all(out_dir: Path = COMPILED_DIR) -> list[Path]:
    return [compile_pipeline(name, out_dir) for name in catalog.COMPILED]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help=f"one of {', '.join(catalog.COMPILED)}")
    parser.add_argument("--profile", help="a compile-time profile of that pipeline, e.g. gpu")
    parser.add_argument("--out-dir", type=Path, default=COMPILED_DIR)
    args = parser.parse_args(argv)
    print(f"compiled {compile_pipeline(args.name, args.out_dir, args.profile)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
