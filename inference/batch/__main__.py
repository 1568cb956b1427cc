"""``python -m inference.batch``: score a CSV of patients or a folder of X-rays with a serving bundle on
Ray Data (a local Ray, or the cluster at --ray-address / RAY_ADDRESS, e.g. inside a KubeRay RayJob).

Writes to --output: results.parquet (one row per input row or image: status scored|refused, the reason
and error of a refused one, probability, prediction / risk_level / top_features or label), summary.json,
report.md and report.html, and ray-stats.txt (Ray Data's own statistics). A refused row never stops the
run; a missing input or bundle does (exit 2). The last stdout line is the summary as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from inference.batch.run import DEFAULT_BATCH, ENGINES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference.batch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", required=True, choices=sorted(DEFAULT_BATCH),
                        help="heart-disease (a CSV of patients) or pneumonia (a folder of JPEG/PNG X-rays)")
    parser.add_argument("--input", required=True, help="CSV path or s3://bucket/key.csv (heart-disease); folder or "
                        "s3:// prefix of images (pneumonia). S3: CLINOPS_S3_ENDPOINT / AWS_* settings")
    parser.add_argument("--output", required=True, help="folder (or s3:// prefix, uploaded at the end) for the "
                        "results and the report")
    parser.add_argument("--bundle", help="bundle folder or s3:// URI; default: the workload's champion in --store")
    parser.add_argument("--store", help="bundle store whose champion is used (default: CLINOPS_BUNDLE_STORE, else "
                        "$CLINOPS_HOME/bundles)")
    parser.add_argument("--engine", choices=ENGINES, default="ray",
                        help="ray: Ray Data map_batches over an actor pool (default); loop: the same scorer in "
                             "this process, batch after batch (the single-process baseline)")
    parser.add_argument("--ray-address", help="a running Ray cluster (default: RAY_ADDRESS, else a private local Ray)")
    parser.add_argument("--actors", type=int, default=2, help="scorer actors, each loading the bundle once (default 2)")
    parser.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs Ray reserves per actor (default 1)")
    parser.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs per actor (pneumonia; default 0)")
    parser.add_argument("--device", default="cpu", help="pneumonia: cpu, cuda or auto (default cpu)")
    parser.add_argument("--batch-size", type=int, help="rows per batch (default: 1024 rows, 32 images)")
    parser.add_argument("--no-explain", action="store_true", help="heart-disease: skip the top features (faster)")
    parser.add_argument("--rename", action="append", default=[], metavar="OLD=NEW",
                        help="map a CSV column to a feature name (repeatable); thalch is read as thalach")
    return parser


def main(argv: list[str] | None = None) -> int:
    import os
    import shutil
    import tempfile

    from bundle import BundleError, storage
    from inference.batch import run
    from inference.batch.inputs import InputError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.actors < 1 or (args.batch_size is not None and args.batch_size < 1):
        parser.error("--actors and --batch-size must be at least 1")
    bad = [r for r in args.rename if "=" not in r]
    if bad:
        parser.error(f"--rename {bad[0]}: OLD=NEW expected")
    store = args.store or os.environ.get("CLINOPS_BUNDLE_STORE") or str(Path(os.environ.get("CLINOPS_HOME", ".clinops"))
                                                                        / "bundles")
    remote = storage.is_s3(args.output)
    out_dir = Path(tempfile.mkdtemp(prefix="clinops-batch-")) if remote else Path(args.output)
    try:
        record = run.score(args.workload, args.input, out_dir, bundle_uri=args.bundle, store=store,
                           engine=args.engine, ray_address=args.ray_address, actors=args.actors,
                           cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor,
                           batch_size=args.batch_size, explain=not args.no_explain, device=args.device,
                           renames=dict(r.split("=", 1) for r in args.rename))
        if remote:
            storage.upload_dir(out_dir, args.output, storage.S3Config.from_environ(os.environ))
            record["outputs"] = {k: storage.join(args.output, Path(v).name) for k, v in record["outputs"].items()}
    except (InputError, FileNotFoundError, BundleError) as err:
        print(f"python -m inference.batch: {err}", file=sys.stderr)
        return 2
    finally:
        if remote:
            shutil.rmtree(out_dir, ignore_errors=True)
    print(json.dumps({k: record[k] for k in ("workload", "rows", "scored", "refused", "refused_by_reason", "counts",
                                             "rows_per_s", "actors", "outputs")}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
