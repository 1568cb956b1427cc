"""A batch run: the input as a Ray Dataset, ``map_batches`` over a pool of scorer actors (each opening
the bundle once), results streamed back to the driver into one Parquet file while progress is printed,
then the summary and report.

``engine="ray"`` joins the Ray at ``ray_address`` (or ``RAY_ADDRESS``: a RayJob's cluster) or starts a
private local one; ``engine="loop"`` calls the same scorer class batch after batch in this process, the
single-process baseline. The champion is resolved once, here, so every actor scores the same version
even if the champion moves during the run.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import bundle
from bundle.storage import S3Config
from inference.batch import inputs, summary
from inference.batch.scorer import SCORERS, open_scoring_bundle

ENGINES = ("ray", "loop")
DEFAULT_BATCH = {"heart-disease": 1024, "pneumonia": 32}
CATEGORIES = {"heart-disease": ("prediction", "risk_level"), "pneumonia": ("label",)}
KEYS = {"heart-disease": "row", "pneumonia": "path"}
RESULTS = "results.parquet"
RAY_STATS = "ray-stats.txt"


def resolve_bundle(uri: str | None, workload: str, store: str | None) -> str:
    """The bundle URI to score with: ``uri``, else the champion pointer's, read once."""
    if uri:
        return uri
    pointer = bundle.champion.read(store, workload, S3Config.from_environ(os.environ)) if store else None
    if pointer is None:
        raise FileNotFoundError(f"no bundle given and no champion promoted for {workload}"
                                + (f" in {store}" if store else ""))
    return pointer.bundle_uri


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None = None) -> Iterator[dict]:
    """Ray for this run: one already initialised, the cluster at ``address`` / ``RAY_ADDRESS``, or a
    private local instance started and stopped here."""
    import ray

    started = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=True)
        else:  # "local": always a fresh private instance, never someone else's running cluster
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=True,
                     configure_logging=False)
            started = True
    try:
        resources = ray.cluster_resources()
        yield {"address": address or "local", "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
               "cpus": resources.get("CPU", 0), "gpus": resources.get("GPU", 0)}
    finally:
        if started:
            ray.shutdown()


def _chunks(frame, size: int) -> list:
    return [frame.iloc[i:i + size] for i in range(0, len(frame), size)] or [frame]


def _source(workload: str, source: str, schema, renames: dict | None):
    """``(table or paths, passthrough columns)`` for the workload's input."""
    if workload == "pneumonia":
        return inputs.list_images(source), ()
    frame = inputs.match_columns(inputs.read_table(source), schema, renames)
    features = set(schema.feature_order)
    return frame, tuple(c for c in frame.columns if c not in features and c != "row")


def score(workload: str, source: str, out_dir: Path, bundle_uri: str | None = None, store: str | None = None,
          engine: str = "ray", ray_address: str | None = None, actors: int = 2, cpus_per_actor: float = 1.0,
          gpus_per_actor: float = 0.0, batch_size: int | None = None, explain: bool = True,
          renames: dict[str, str] | None = None, device: str = "cpu",
          progress: Callable[[str], None] = lambda line: print(line, flush=True)) -> dict:
    """Score ``source`` into ``out_dir`` (``results.parquet``, ``summary.json``, ``report.md``,
    ``report.html``); returns the summary."""
    if workload not in SCORERS:
        raise KeyError(f"unknown workload {workload!r}; known: {', '.join(SCORERS)}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    batch_size = batch_size or DEFAULT_BATCH[workload]
    uri = resolve_bundle(bundle_uri, workload, store)
    served = open_scoring_bundle(uri, workload, None)  # verified; its schema and version (no model loaded)
    kwargs: dict = {"bundle_uri": uri, "max_batch_rows": batch_size}
    items, passthrough = _source(workload, source, served.schema, renames)
    if workload == "heart-disease":
        kwargs |= {"explain": explain, "passthrough": passthrough}
    else:
        threads = max(1, int(cpus_per_actor)) if engine == "ray" else 0
        kwargs |= {"device": device, "threads": threads}
    total = len(items)
    unit = "images" if workload == "pneumonia" else "rows"
    progress(f"[{workload}] {total} {unit} from {source}; "
             f"bundle {served.manifest.model_name} v{served.manifest.model_version}; engine {engine}"
             + (f", {actors} actors x {cpus_per_actor:g} CPU" if engine == "ray" else "") + f", batches of {batch_size}")
    found = summary.Summary(workload, KEYS[workload], CATEGORIES[workload])
    results = out_dir / RESULTS
    start = time.perf_counter()
    extra: dict = {"engine": engine}
    with _writer(results) as write:
        def sink(table: pa.Table) -> None:
            if not found.rows:
                extra["first_result_s"] = round(time.perf_counter() - start, 3)
                extra["first_result_rows"] = table.num_rows
            write(table)
            found.add(table)
            now = time.perf_counter()
            if now - sink.last >= 2.0 or found.rows == total:
                sink.last = now
                progress(f"[{workload}] batches scored {found.batches} · {unit} {found.rows}/{total} "
                         f"({100 * found.rows / max(total, 1):.0f}%) · {found.rows / (now - start):.1f} {unit}/s · "
                         f"refused {found.rows - found.scored}")

        sink.last = start
        if engine == "loop":
            scorer = SCORERS[workload](**kwargs)
            for chunk in _batches(workload, items, batch_size):
                sink(scorer(chunk))
        else:
            with ray_session(ray_address) as cluster:
                extra["ray"] = cluster | {"start_s": round(time.perf_counter() - start, 3)}
                import ray.data

                block = max(1, min(batch_size, math.ceil(total / actors)))  # at least one block per actor
                dataset = _dataset(workload, items, block).map_batches(
                    SCORERS[workload], fn_constructor_kwargs=kwargs, batch_size=batch_size,
                    # one batch in flight per actor: batches spread over every actor instead of queueing on
                    # the first one ready
                    compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
                    num_cpus=cpus_per_actor, num_gpus=gpus_per_actor or None, batch_format="numpy")
                for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                    sink(table)
                stats = dataset.stats()
                (out_dir / RAY_STATS).write_text(stats)
                extra["ray"]["stats"] = str(out_dir / RAY_STATS)
    wall = time.perf_counter() - start
    if found.rows != total:
        raise RuntimeError(f"{total} inputs, {found.rows} results: rows were lost")
    record = found.to_dict(input=source, model={"name": served.manifest.model_name,
                                                "version": served.manifest.model_version, "bundle": uri},
                           wall_s=round(wall, 3), rows_per_s=round(found.rows / wall, 2) if wall else None,
                           actors=len({s.split(":", 1)[0] for s in found.scorers}),
                           bundle_loads=len(found.scorers),
                           outputs={"results": str(results)}, **extra)
    paths = summary.write(record, out_dir)
    record["outputs"] |= {k: str(v) for k, v in paths.items()}
    summary.write(record, out_dir)
    progress(f"[{workload}] done in {wall:.1f} s: {found.scored} scored, {found.rows - found.scored} refused "
             f"({', '.join(f'{k} {v}' for k, v in found.reasons.most_common()) or 'none'}) · "
             f"{found.rows / wall:.1f} {unit}/s\n    results: {results}\n    report: {paths['html']}")
    return record


def _dataset(workload: str, items, batch_size: int):
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # this module prints its own progress lines
    # results in input order: an actor pool hands back blocks as they finish, in any order, otherwise
    context.execution_options.preserve_order = True
    if workload == "pneumonia":
        blocks = max(1, math.ceil(len(items) / batch_size))
        return ray.data.from_items([{"path": p} for p in items], override_num_blocks=blocks)
    return ray.data.from_pandas(_chunks(items, batch_size))  # one block per batch: every actor gets work


def _batches(workload: str, items, batch_size: int) -> Iterator[dict]:
    import numpy as np

    if workload == "pneumonia":
        for i in range(0, len(items), batch_size):
            yield {"path": np.asarray(items[i:i + batch_size], dtype=object)}
        return
    for chunk in _chunks(items, batch_size):
        yield {name: chunk[name].to_numpy() for name in chunk.columns}


@contextlib.contextmanager
def _writer(path: Path):
    """A Parquet writer opened on the first table (its schema); replaces ``path`` only when done."""
    partial = path.with_name(f".{path.name}.partial")
    state: dict = {}

    def write(table: pa.Table) -> None:
        if "writer" not in state:
            state["writer"] = pq.ParquetWriter(partial, table.schema)
        state["writer"].write_table(table)

    try:
        yield write
    except BaseException:
        if "writer" in state:
            state["writer"].close()
        partial.unlink(missing_ok=True)
        raise
    if "writer" in state:
        state["writer"].close()
        os.replace(partial, path)
