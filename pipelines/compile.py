"""Compile every pipeline to KFP IR YAML under ``pipelines/compiled/`` (uploadable to a KFP 2.x dashboard).

A pipeline module may define compile-time profiles (``COMPILE_PROFILES`` and ``build_pipeline``) for
what run parameters cannot set, such as a step's accelerator: ``python -m pipelines.compile pneumonia
--profile gpu`` writes ``pipelines/compiled/pneumonia-gpu.yaml``.

Images are a setting: ``--image-registry`` and ``--image-tag`` (``make compile IMAGE_REGISTRY=...
IMAGE_TAG=...``) replace the default reference of every project image in the compiled spec, in the
executors' ``image`` and in parameter defaults such as the RayJob's image. The committed golden files use
the defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.common import image
from pipelines import catalog

COMPILED_DIR = Path(__file__).resolve().parent / "compiled"


def retarget_images(text: str, registry: str = image.DEFAULT_REGISTRY, tag: str = image.DEFAULT_TAG) -> str:
    """``text`` with every default project image reference replaced by ``registry``/name:``tag``."""
    if not registry.strip() or not tag.strip() or any(c.isspace() for c in registry + tag):
        raise ValueError(f"image registry {registry!r} and tag {tag!r} must be non-empty, without spaces")
    for name in image.NAMES:
        text = text.replace(image.image_ref(name), image.image_ref(name, registry, tag))
    return text


def compile_pipeline(name: str, out_dir: Path = COMPILED_DIR, profile: str | None = None,
                     registry: str = image.DEFAULT_REGISTRY, tag: str = image.DEFAULT_TAG) -> Path:
    """Compile a workload's training pipeline or a shared one (``monitoring``) to ``<out_dir>/<name>.yaml``,
    or with a compile-time ``profile`` to ``<out_dir>/<name>-<profile>.yaml``, its images in ``registry``
    with ``tag``."""
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
    if (registry, tag) != (image.DEFAULT_REGISTRY, image.DEFAULT_TAG):
        path.write_text(retarget_images(path.read_text(), registry, tag))
    return path


def compile_workload(workload: str, out_dir: Path = COMPILED_DIR) -> Path:
    return compile_pipeline(workload, out_dir)


def compile_all(out_dir: Path = COMPILED_DIR, registry: str = image.DEFAULT_REGISTRY,
                tag: str = image.DEFAULT_TAG) -> list[Path]:
    """Every pipeline, and each one's compile-time profiles other than the one its PIPELINE is built with
    (``pneumonia-gpu.yaml``): golden files as well."""
    paths = []
    for name in catalog.COMPILED:
        paths.append(compile_pipeline(name, out_dir, registry=registry, tag=tag))
        module = catalog.load_pipeline(name)
        for profile in getattr(module, "COMPILE_PROFILES", {}):
            if profile != getattr(module, "DEFAULT_COMPILE_PROFILE", None):
                paths.append(compile_pipeline(name, out_dir, profile, registry, tag))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help=f"one of {', '.join(catalog.COMPILED)}")
    parser.add_argument("--all", action="store_true", help="every pipeline (what `make compile` writes)")
    parser.add_argument("--profile", help="a compile-time profile of that pipeline, e.g. gpu")
    parser.add_argument("--out-dir", type=Path, default=COMPILED_DIR)
    parser.add_argument("--image-registry", default=image.DEFAULT_REGISTRY, help="where the project's images are")
    parser.add_argument("--image-tag", default=image.DEFAULT_TAG, help="the images' tag")
    args = parser.parse_args(argv)
    if args.all == bool(args.name):
        parser.error("name a pipeline or pass --all")
    try:
        image.image_ref(image.COMPONENT, args.image_registry, args.image_tag)
        retarget_images("", args.image_registry, args.image_tag)
    except ValueError as err:
        parser.error(str(err))
    if args.all:
        paths = compile_all(args.out_dir, args.image_registry, args.image_tag)
    else:
        paths = [compile_pipeline(args.name, args.out_dir, args.profile, args.image_registry, args.image_tag)]
    for path in paths:
        print(f"compiled {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
