"""Batch-scoring throughput: Ray Data (``map_batches`` over an actor pool, one bundle load per actor)
against a plain single-process loop over the same bundle and the same scorer class, in one run. Not a
test: ``make bench-batch``.

- heart-disease: the UCI table training reads, repeated to ``BENCH_BATCH_ROWS`` (50000) rows, with the
  explanation's top features (``BENCH_BATCH_EXPLAIN=0`` to skip); rows/s. About 19% of the UCI rows carry a
  cholesterol of 0, which the schema refuses as online: they are refused, counted and written, not dropped.
- pneumonia: ``BENCH_BATCH_IMAGES`` (256) phantom X-rays of ``BENCH_BATCH_IMAGE_SIZE`` (128) px; images/s.

Each workload's champion bundle is used, or its sample bundle when there is none. One local Ray is started
first (its start-up printed apart, not counted); then ``BENCH_BATCH_ROUNDS`` (3) alternating rounds, loop
and Ray, each a whole ``inference.batch`` run: the wall rate (scorer start-up included) and the steady rate
(after the first batch). Medians, min–max spread and the Ray/loop ratio are printed with the machine's load;
target: Ray Data's steady rate at least the loop's (``TARGET``), PASS or MISS. JSON:
``$CLINOPS_HOME/bench/batch.json``. ``BENCH_BATCH_ACTORS`` (2), ``BENCH_BATCH_WORKLOADS``
(``heart-disease,pneumonia``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1])]

from components.common.settings import get_settings  # noqa: E402
from inference.batch import inputs, run  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_BATCH_ROUNDS", "3"))
ROWS = int(os.environ.get("BENCH_BATCH_ROWS", "50000"))
IMAGES = int(os.environ.get("BENCH_BATCH_IMAGES", "256"))
IMAGE_SIZE = int(os.environ.get("BENCH_BATCH_IMAGE_SIZE", "128"))
ACTORS = int(os.environ.get("BENCH_BATCH_ACTORS", "2"))
EXPLAIN = os.environ.get("BENCH_BATCH_EXPLAIN", "1") != "0"
WORKLOADS = os.environ.get("BENCH_BATCH_WORKLOADS", "heart-disease,pneumonia").split(",")
TARGET = 1.0  # Ray Data's steady rate / the plain loop's


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def bundle_for(workload: str, scratch: Path) -> tuple[str, str]:
    """(bundle URI, what it is): the champion, else a sample bundle."""
    store = str(get_settings().home / "bundles")
    try:
        return run.resolve_bundle(None, workload, store), "champion"
    except FileNotFoundError:
        from support import sample_bundles

        if workload == "heart-disease":
            from components.heart_disease.schema import serving_schema

            return str(sample_bundles.write_heart_disease(scratch / "heart", serving_schema())), "sample (logreg)"
        return str(sample_bundles.write_pneumonia(scratch / "pneumonia", height=64, width=64)), "sample (tiny CNN)"


def make_input(workload: str, scratch: Path) -> str:
    if workload == "heart-disease":
        table = inputs.read_table(inputs.PACKAGED + "heart_disease_uci.csv").drop(columns=["row"])
        repeated = table.iloc[[i % len(table) for i in range(ROWS)]]
        path = scratch / "patients.csv"
        repeated.to_csv(path, index=False)
        return str(path)
    from components.batch.step import phantom_split

    return phantom_split(scratch / "phantom", images=IMAGES, size=IMAGE_SIZE)


def one_run(workload: str, source: str, uri: str, engine: str, scratch: Path) -> dict:
    record = run.score(workload, source, scratch / f"out-{engine}", bundle_uri=uri, engine=engine, actors=ACTORS,
                       explain=EXPLAIN, progress=lambda _: None)
    steady_s = record["wall_s"] - record["first_result_s"]
    steady_rows = record["rows"] - record["first_result_rows"]
    return {"wall_rate": record["rows"] / record["wall_s"], "steady_rate": steady_rows / steady_s if steady_s else 0,
            "wall_s": record["wall_s"], "first_result_s": record["first_result_s"], "rows": record["rows"],
            "refused": record["refused"], "actors": record["actors"]}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def main() -> int:
    import ray

    out = get_settings().home / "bench" / "batch.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"batch scoring: Ray Data ({ACTORS} actors) vs a plain loop · {ROUNDS} alternating rounds · "
          f"{platform.machine()}, {os.cpu_count()} cores · {load()}", flush=True)
    started = time.perf_counter()
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, configure_logging=False,
             log_to_driver=False)
    ray_start_s = time.perf_counter() - started
    print(f"local Ray started in {ray_start_s:.1f} s (not counted below)", flush=True)
    report: dict = {"settings": {"rounds": ROUNDS, "rows": ROWS, "images": IMAGES, "image_size": IMAGE_SIZE,
                                 "actors": ACTORS, "explain": EXPLAIN, "cores": os.cpu_count()},
                    "ray_start_s": ray_start_s, "load_before": os.getloadavg(), "workloads": {}}
    try:
        with tempfile.TemporaryDirectory(prefix="clinops-bench-batch-") as tmp:
            for workload in WORKLOADS:
                scratch = Path(tmp) / workload
                scratch.mkdir()
                uri, kind = bundle_for(workload, scratch)
                source = make_input(workload, scratch)
                unit = "images/s" if workload == "pneumonia" else "rows/s"
                print(f"\n[{workload}] bundle: {kind} {uri} · input: {source}", flush=True)
                rounds = {"loop": [], "ray": []}
                for number in range(1, ROUNDS + 1):
                    for engine in (("loop", "ray") if number % 2 else ("ray", "loop")):
                        result = one_run(workload, source, uri, engine, scratch)
                        rounds[engine].append(result)
                        print(f"  round {number} {engine:4s}: wall {result['wall_rate']:8.1f} {unit} "
                              f"({result['wall_s']:.1f} s, first batch after {result['first_result_s']:.1f} s) · "
                              f"steady {result['steady_rate']:8.1f} {unit} · {result['rows']} in, "
                              f"{result['refused']} refused · {result['actors']} actor(s) · {load()}", flush=True)
                ratios = [r["steady_rate"] / p["steady_rate"] for r, p in zip(rounds["ray"], rounds["loop"], strict=True)]
                wall_ratios = [r["wall_rate"] / p["wall_rate"] for r, p in zip(rounds["ray"], rounds["loop"], strict=True)]
                verdict = "PASS" if statistics.median(ratios) >= TARGET else "MISS"
                print(f"  loop: steady {spread([r['steady_rate'] for r in rounds['loop']])} {unit}, "
                      f"wall {spread([r['wall_rate'] for r in rounds['loop']])}")
                print(f"  ray:  steady {spread([r['steady_rate'] for r in rounds['ray']])} {unit}, "
                      f"wall {spread([r['wall_rate'] for r in rounds['ray']])}")
                print(f"  ray/loop steady ratio {statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}), "
                      f"wall ratio {statistics.median(wall_ratios):.2f} · target >= {TARGET:.1f}: {verdict}", flush=True)
                report["workloads"][workload] = {"bundle": kind, "unit": unit, "rounds": rounds,
                                                 "steady_ratio": ratios, "wall_ratio": wall_ratios, "verdict": verdict}
    finally:
        ray.shutdown()
    report["load_after"] = os.getloadavg()
    out.write_text(json.dumps(report, indent=2))
    print(f"\n{load()} · written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
