"""The drift environment's half of ``make eval-drift`` (and of the test that compares it with the live
sidecar): every window of a prepared problem judged by the sidecar's own detectors.

    $CLINOPS_DRIFT_PYTHON tests/bench/drift_judge.py PROBLEM.npz RESULT.npz

PROBLEM holds, per split, the reference the detector is fitted on, and the windows to judge (row indices
into the arrays of the problem). Heart-disease problems (``kind`` tabular) are judged by
:class:`inference.drift.detectors.TabularDetector` built from the exported settings, and by the naive
baseline: alibi-detect's ``TabularDrift`` with a Bonferroni correction at 0.05, missing values as -1, no
model score. Pneumonia problems (``kind`` embedding) by :class:`~inference.drift.detectors.EmbeddingDetector`.
RESULT holds, per window: ours, naive (tabular only), the lowest p-value, and the detector's seconds.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

NAIVE_P_VAL = 0.05


def naive_detector(x_ref: np.ndarray, categorical: list[int]):
    from alibi_detect.cd import TabularDrift

    return TabularDrift(np.nan_to_num(x_ref, nan=-1.0), p_val=NAIVE_P_VAL,
                        categories_per_feature={j: None for j in categorical}, correction="bonferroni")


def lowest_p(verdict: dict) -> float:
    p = [t["p_val"] for t in verdict["features"]]
    if verdict.get("score"):
        p.append(verdict["score"]["p_val"])
    return float(min(p)) if p else 1.0


def judge_tabular(problem) -> dict[str, np.ndarray]:
    from bundle.drift import TabularDriftSettings
    from inference.drift.detectors import TabularDetector

    settings = TabularDriftSettings.from_dict(json.loads(str(problem["settings"])))
    x, scores = problem["x"], problem["scores"]  # scores: [splits, rows] from each split's model
    categorical = [settings.feature_names.index(c) for c in settings.categorical]
    n = len(problem["win_split"])
    ours, naive, low, seconds = np.zeros(n, bool), np.zeros(n, bool), np.ones(n), np.zeros(n)
    rows = np.split(problem["win_rows"], np.cumsum(problem["win_len"])[:-1])
    for split in np.unique(problem["win_split"]):
        ref = problem["ref_rows"][split]
        detector = TabularDetector(settings, {"x": x[ref], "score": problem["ref_scores"][split][:, None]}, None)
        baseline = naive_detector(x[ref], categorical)
        for w in np.flatnonzero(problem["win_split"] == split):
            verdict = detector.judge(x[rows[w]], scores[split][rows[w]][:, None])
            ours[w], low[w], seconds[w] = verdict["is_drift"], lowest_p(verdict), verdict["detector_seconds"]
            naive[w] = bool(baseline.predict(np.nan_to_num(x[rows[w]], nan=-1.0))["data"]["is_drift"])
    return {"ours": ours, "naive": naive, "lowest_p": low, "seconds": seconds}


def judge_embedding(problem) -> dict[str, np.ndarray]:
    from bundle.drift import KSDriftSettings
    from inference.drift.detectors import EmbeddingDetector

    settings = KSDriftSettings.from_dict(json.loads(str(problem["settings"])))
    emb = problem["embedding"]
    n = len(problem["win_split"])
    ours, low, seconds = np.zeros(n, bool), np.ones(n), np.zeros(n)
    rows = np.split(problem["win_rows"], np.cumsum(problem["win_len"])[:-1])
    for split in np.unique(problem["win_split"]):
        detector = EmbeddingDetector(settings, {settings.reference_array: emb[problem["ref_rows"][split]]})
        for w in np.flatnonzero(problem["win_split"] == split):
            verdict = detector.judge(emb[rows[w]])
            ours[w], low[w], seconds[w] = verdict["is_drift"], lowest_p(verdict), verdict["detector_seconds"]
    return {"ours": ours, "lowest_p": low, "seconds": seconds}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore")  # scipy's small-sample notes, once per window
    with np.load(argv[0], allow_pickle=False) as arrays:
        problem = {name: arrays[name] for name in arrays.files}
    kind = str(problem["kind"])
    result = judge_tabular(problem) if kind == "tabular" else judge_embedding(problem)
    np.savez(argv[1], **result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
