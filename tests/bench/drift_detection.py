"""Drift detection measured on real shift (``make eval-drift``; an evaluation, not a test).

heart-disease: the UCI sites are a natural experiment. Each of ``EVAL_DRIFT_SPLITS`` random splits (default
100) takes 180 Cleveland patients as the reference and trains the model on them (family
``EVAL_DRIFT_FAMILY``, default logistic regression, the pipeline's preprocessing); the reference scores are
out-of-fold, as the export writes them. Windows of 20, 50 and 100 patients (``EVAL_DRIFT_WINDOWS`` per
split and scenario, default 4) are then judged by the sidecar's detector built from the exported settings
(``components.heart_disease.export.drift_settings``) and, beside it, by a naive per-feature KS /
chi-square test with a Bonferroni correction at 0.05:
- no shift: held-out Cleveland patients (the false-positive rate);
- prevalence shift: held-out Cleveland windows with 80% diseased patients (drawn with replacement when
  the held-out part has too few);
- site shift: windows of Hungary, Switzerland and VA Long Beach patients, each site apart.
Targets: false positives <= 5% at every size; site shift >= 99% from 20 up; prevalence >= 80% at 50.

pneumonia: phantom chest X-rays through the champion's module (the sample EfficientNet-free CNN when no
champion was exported), decoded and normalised by the transformer's own codec. Reference: 300 clean
phantoms per split (``EVAL_DRIFT_IMAGE_SPLITS``, default 20) from a pool of 600; windows of clean held-out
phantoms, and of phantoms taken with a shifted acquisition: low contrast, sensor noise, a quarter of the
resolution. Detector: the bundle's own settings (feature-wise KS on the embedding).

Windows of one split overlap (they are drawn from the same held-out patients), so the rates' Wilson
intervals are optimistic; the splits are what makes the estimate honest. Prints the tables and the targets,
writes ``$CLINOPS_HOME/bench/drift-detection.json`` and a plot beside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

SPLITS = int(os.environ.get("EVAL_DRIFT_SPLITS", "100"))
WINDOWS = int(os.environ.get("EVAL_DRIFT_WINDOWS", "4"))
IMAGE_SPLITS = int(os.environ.get("EVAL_DRIFT_IMAGE_SPLITS", "20"))
FAMILY = os.environ.get("EVAL_DRIFT_FAMILY", "logistic_regression")
SIZES = tuple(int(s) for s in os.environ.get("EVAL_DRIFT_SIZES", "20,50,100").split(","))
REFERENCE_SITE, REFERENCE_PATIENTS, PREVALENCE = "Cleveland", 180, 0.8
SHIFT_SITES = ("Hungary", "Switzerland", "VA Long Beach")
PARAMS = {"logistic_regression": {"C": 1.0}, "random_forest": {"n_estimators": 200, "min_samples_leaf": 3,
                                                                "max_features": "sqrt"},
          "gradient_boosting": {"n_estimators": 100, "learning_rate": 0.05, "max_depth": 2, "subsample": 0.8}}
IMAGE_POOL, IMAGE_REFERENCE, SHIFTED_POOL = 600, 300, 200
TARGETS = {"none": ("<=", 0.05, SIZES), "prevalence": (">=", 0.80, (50,)), "site": (">=", 0.99, SIZES)}


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre, half = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


class Windows:
    """Windows to judge, as flat arrays the drift environment reads (row indices concatenated)."""

    def __init__(self):
        self.split, self.size, self.scenario, self.rows = [], [], [], []

    def add(self, split: int, scenario: str, rows: np.ndarray) -> None:
        self.split.append(split)
        self.size.append(len(rows))
        self.scenario.append(scenario)
        self.rows.append(np.asarray(rows, dtype=np.int64))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"win_split": np.array(self.split), "win_len": np.array(self.size), "win_scenario": np.array(self.scenario),
                "win_rows": np.concatenate(self.rows)}


def heart_problem(seed: int = 0) -> dict[str, np.ndarray]:
    from components.heart_disease import export, model
    from components.heart_disease.data import ingest
    from components.heart_disease.schema import FEATURES, SITE, TARGET
    from components.heart_disease.validation import validate

    df, _ = validate(ingest())  # impossible values (cholesterol 0) become missing, as a client sends them
    df = df.reset_index(drop=True)
    x, y, site = df[FEATURES].to_numpy(float), df[TARGET].astype(int).to_numpy(), df[SITE].to_numpy()
    rng = np.random.default_rng(seed)
    home = np.flatnonzero(site == REFERENCE_SITE)
    ref_rows, ref_scores, scores, windows = [], [], [], Windows()
    started = time.perf_counter()
    for split in range(SPLITS):
        order = rng.permutation(home)
        ref, held = order[:REFERENCE_PATIENTS], order[REFERENCE_PATIENTS:]
        fitted = model.build(FAMILY, PARAMS[FAMILY], seed=split).fit(df.loc[ref, FEATURES], y[ref])
        ref_rows.append(ref)
        ref_scores.append(export.out_of_fold_scores(model.build(FAMILY, PARAMS[FAMILY], seed=split),
                                                    df.loc[ref], seed=split))
        scores.append(fitted.predict_proba(df[FEATURES])[:, 1])
        sick, well = held[y[held] == 1], held[y[held] == 0]
        for size in SIZES:
            for _ in range(WINDOWS):
                windows.add(split, "none", rng.choice(held, size, replace=size > len(held)))
                k = int(round(PREVALENCE * size))
                windows.add(split, "prevalence", np.concatenate([rng.choice(sick, k, replace=k > len(sick)),
                                                                 rng.choice(well, size - k, replace=size - k > len(well))]))
                for name in SHIFT_SITES:
                    pool = np.flatnonzero(site == name)
                    windows.add(split, f"site:{name}", rng.choice(pool, size, replace=size > len(pool)))
        if split % 10 == 9:
            print(f"  heart-disease: {split + 1}/{SPLITS} splits trained ({time.perf_counter() - started:.0f} s)",
                  flush=True)
    return {"kind": np.array("tabular"), "settings": np.array(json.dumps(export.drift_settings().to_dict())),
            "x": x, "ref_rows": np.array(ref_rows), "ref_scores": np.array(ref_scores), "scores": np.array(scores),
            **windows.arrays()}


def pneumonia_bundle(scratch: Path):
    """The pneumonia champion's bundle, or the sample one (a small CNN) when none was exported."""
    from bundle import champion, locate, open_bundle
    from components.common.settings import get_settings

    settings = get_settings()
    pointer = champion.read(settings.bundles, "pneumonia", settings.s3)
    if pointer is not None:
        folder = locate(pointer.bundle_uri, "pneumonia", s3=settings.s3, cache_dir=scratch / "champion")
        return open_bundle(folder, "pneumonia"), f"champion {pointer.bundle_uri}"
    from support import sample_bundles

    return open_bundle(sample_bundles.write_pneumonia(scratch / "pneumonia")), "sample bundle (no champion)"


def acquisitions(rng, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """One phantom (values in [0, 1]) as another scanner would take it."""
    from PIL import Image

    small = Image.fromarray((pixels * 255).astype(np.uint8))
    w, h = small.size
    blurred = np.asarray(small.resize((w // 4, h // 4), Image.BILINEAR).resize((w, h), Image.BILINEAR)) / 255
    return {"low contrast": 0.35 + 0.5 * (pixels - 0.35),
            "sensor noise": np.clip(pixels + rng.normal(0, 0.06, pixels.shape), 0, 1),
            "quarter resolution": blurred}


def pneumonia_problem(scratch: Path, seed: int = 0) -> tuple[dict[str, np.ndarray], str]:
    import io
    import types

    import torch
    from PIL import Image

    from components.pneumonia.phantom import render
    from inference.transformer.pneumonia import PneumoniaCodec

    bundle, which = pneumonia_bundle(scratch)
    schema = bundle.schema
    codec = PneumoniaCodec(schema, types.SimpleNamespace(threshold=None, max_pixels=None, max_image_bytes=1 << 24,
                                                         max_rows_per_request=1 << 16, predictor_input="float32"))
    module = torch.jit.load(str(bundle.model_path), map_location="cpu").eval()
    rng = np.random.default_rng(seed)
    side = max(schema.image.height, 96)
    mode = "L" if schema.image.channels == 1 else "RGB"

    def png(pixels):
        buffer = io.BytesIO()
        Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).convert(mode).save(buffer, "PNG")
        return buffer.getvalue()

    groups: dict[str, list[bytes]] = {"clean": [], "low contrast": [], "sensor noise": [], "quarter resolution": []}
    for i in range(IMAGE_POOL):
        groups["clean"].append(png(render(rng, side, side, pneumonia=bool(i % 2))))
    for i in range(SHIFTED_POOL):
        for name, pixels in acquisitions(rng, render(rng, side, side, pneumonia=bool(i % 2))).items():
            groups[name].append(png(pixels))
    embedding, offsets, started = [], {}, time.perf_counter()
    with torch.inference_mode():
        for name, files in groups.items():
            offsets[name] = sum(len(e) for e in embedding)
            for start in range(0, len(files), 32):
                x = codec.normalise(codec.encode_files(files[start:start + 32]))
                embedding.append(module(torch.from_numpy(x))[1].float().numpy())
    print(f"  pneumonia: {sum(map(len, groups.values()))} phantoms embedded by the {which} "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    windows, ref_rows = Windows(), []
    clean = np.arange(IMAGE_POOL)
    for split in range(IMAGE_SPLITS):
        order = rng.permutation(clean)
        ref, held = order[:IMAGE_REFERENCE], order[IMAGE_REFERENCE:]
        ref_rows.append(ref)
        for size in SIZES:
            for _ in range(WINDOWS):
                windows.add(split, "none", rng.choice(held, size, replace=size > len(held)))
                for name in ("low contrast", "sensor noise", "quarter resolution"):
                    windows.add(split, f"acquisition:{name}", offsets[name] + rng.choice(SHIFTED_POOL, size, replace=False))
    return {"kind": np.array("embedding"), "settings": np.array(json.dumps(bundle.drift.to_dict())),
            "embedding": np.concatenate(embedding), "ref_rows": np.array(ref_rows), **windows.arrays()}, which


def judge(problem: dict[str, np.ndarray], scratch: Path, name: str) -> dict[str, np.ndarray]:
    """The drift environment judges every window (the sidecar's detectors live there)."""
    drift_python = os.environ.get("CLINOPS_DRIFT_PYTHON", str(ROOT / ".venv-drift/bin/python"))
    src, dst = scratch / f"{name}-problem.npz", scratch / f"{name}-result.npz"
    np.savez(src, **problem)
    started = time.perf_counter()
    subprocess.run([drift_python, str(ROOT / "tests/bench/drift_judge.py"), str(src), str(dst)], check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    print(f"  {name}: {len(problem['win_split'])} windows judged in the drift environment "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    with np.load(dst) as arrays:
        return {k: arrays[k] for k in arrays.files}


def table(problem, result, title: str) -> dict:
    """Rates per scenario and window size, ours and (tabular) the naive baseline; prints the table."""
    scenarios = list(dict.fromkeys(problem["win_scenario"].tolist()))
    rows = {}
    print(f"\n{title}\n  {'scenario':32s}" + "".join(f"{'n=' + str(s):>36s}" for s in SIZES))
    for scenario in scenarios:
        rows[scenario] = {}
        line = f"  {scenario:32s}"
        for size in SIZES:
            mask = (problem["win_scenario"] == scenario) & (problem["win_len"] == size)
            n, hits = int(mask.sum()), int(result["ours"][mask].sum())
            low, high = wilson(hits, n)
            cell = {"windows": n, "ours": hits / n, "ours_ci95": [low, high]}
            text = f"{100 * hits / n:5.1f}% [{100 * low:4.1f}-{100 * high:5.1f}]"
            if "naive" in result:
                cell["naive"] = float(result["naive"][mask].mean())
                text += f"  naive {100 * cell['naive']:5.1f}%"
            rows[scenario][size] = cell
            line += f"{text:>36s}"
        print(line)
    return rows


def check_targets(rows: dict, workload: str) -> list[dict]:
    out = []
    for scenario, cells in rows.items():
        kind = "site" if scenario.startswith(("site:", "acquisition:")) else scenario
        if kind not in TARGETS or (workload == "pneumonia" and kind == "prevalence"):
            continue
        op, bound, sizes = TARGETS[kind]
        if workload == "pneumonia" and kind == "site":
            op, bound = ">=", 0.99  # shifted acquisition flagged
        for size in sizes:
            rate = cells[size]["ours"]
            ok = rate <= bound if op == "<=" else rate >= bound
            out.append({"workload": workload, "scenario": scenario, "size": size, "rate": rate, "target": f"{op} {bound:.0%}",
                        "met": ok})
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.2), squeeze=False)
    for ax, (workload, rows) in zip(axes[0], results.items(), strict=True):
        for scenario, cells in rows.items():
            line, = ax.plot(SIZES, [100 * cells[s]["ours"] for s in SIZES], marker="o", label=scenario)
            if "naive" in cells[SIZES[0]]:
                ax.plot(SIZES, [100 * cells[s]["naive"] for s in SIZES], ls="--", color=line.get_color(), alpha=0.6)
        ax.axhline(5, color="grey", lw=0.8, ls=":")
        ax.set(title=f"{workload} (dashed: naive baseline)", xlabel="window (rows)", ylabel="windows flagged (%)",
               xticks=list(SIZES), ylim=(-2, 102))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    from components.common.settings import get_settings

    out_dir = Path(get_settings().home) / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"eval-drift: {SPLITS} heart-disease splits and {IMAGE_SPLITS} pneumonia splits, {WINDOWS} windows per "
          f"split, scenario and size {SIZES}; model family {FAMILY}; load {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores", flush=True)
    results, seconds = {}, {}
    with tempfile.TemporaryDirectory(prefix="clinops-eval-drift-") as tmp:
        scratch = Path(tmp)
        heart = heart_problem()
        heart_result = judge(heart, scratch, "heart-disease")
        images, which = pneumonia_problem(scratch)
        image_result = judge(images, scratch, "pneumonia")
    results["heart-disease"] = table(heart, heart_result, "heart-disease: windows flagged, ours [95% Wilson CI] and "
                                                          "the naive test (reference: 180 Cleveland patients)")
    results["pneumonia"] = table(images, image_result, f"pneumonia: windows flagged [95% Wilson CI] ({which}, "
                                                       f"reference: {IMAGE_REFERENCE} clean phantoms)")
    seconds = {"heart-disease": float(np.median(heart_result["seconds"])),
               "pneumonia": float(np.median(image_result["seconds"]))}
    checks = check_targets(results["heart-disease"], "heart-disease") + check_targets(results["pneumonia"], "pneumonia")
    print("\ntargets")
    for c in checks:
        print(f"  {'met ' if c['met'] else 'MISS'} {c['workload']:13s} {c['scenario']:32s} n={c['size']:<4d} "
              f"{100 * c['rate']:5.1f}% (target {c['target']})")
    print(f"detector time per window (median): heart-disease {1000 * seconds['heart-disease']:.1f} ms, "
          f"pneumonia {1000 * seconds['pneumonia']:.1f} ms")
    report = {"splits": {"heart-disease": SPLITS, "pneumonia": IMAGE_SPLITS}, "windows_per_split": WINDOWS,
              "sizes": SIZES, "family": FAMILY, "pneumonia_model": which, "rates": results, "targets": checks,
              "detector_seconds_median": seconds}
    (out_dir / "drift-detection.json").write_text(json.dumps(report, indent=2, default=str))
    plot(results, out_dir / "drift-detection.png")
    print(f"written: {out_dir / 'drift-detection.json'}, {out_dir / 'drift-detection.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
