"""Evaluation plots (ROC, precision-recall, confusion matrix, calibration) as PNG, and an HTML page
that embeds them, for KFP ``HTML`` artifacts and MLflow."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import metrics as skm  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def roc_png(y, p, title: str = "ROC curve") -> bytes:
    fpr, tpr, _ = skm.roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, lw=2, label=f"AUC = {skm.roc_auc_score(y, p):.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title=title)
    ax.legend(loc="lower right")
    return _png(fig)


def pr_png(y, p, title: str = "Precision-recall") -> bytes:
    precision, recall, _ = skm.precision_recall_curve(y, p)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(recall, precision, lw=2, label=f"AP = {skm.average_precision_score(y, p):.3f}")
    ax.axhline(float(np.mean(y)), ls="--", color="grey", lw=1, label="prevalence")
    ax.set(xlabel="Recall", ylabel="Precision", title=title, ylim=(0, 1.02))
    ax.legend(loc="lower left")
    return _png(fig)


def confusion_png(y, p, threshold: float, labels: tuple[str, str]) -> bytes:
    matrix = skm.confusion_matrix(y, (np.asarray(p) >= threshold).astype(int), labels=[0, 1])
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center",
                color="white" if value > matrix.max() / 2 else "black", fontsize=14)
    ax.set_xticks([0, 1], labels)
    ax.set_yticks([0, 1], labels)
    ax.set(xlabel="Predicted", ylabel="Actual", title=f"Confusion matrix @ {threshold:.2f}")
    return _png(fig)


def calibration_png(y, p, bins: int = 10) -> bytes:
    frac_pos, mean_pred = calibration_curve(y, p, n_bins=bins, strategy="quantile")
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(mean_pred, frac_pos, "o-", lw=2, label="model")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect")
    ax.set(xlabel="Mean predicted probability", ylabel="Observed frequency", title="Calibration")
    ax.legend(loc="upper left")
    return _png(fig)


def reliability_png(y, p_model, p_served=None, bins: int = 10) -> bytes:
    """Observed frequency against predicted probability in equal-width bins, with each bin's patient count:
    the model's probability and, when recalibrated, the served one."""
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(4.5, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect")
    for name, p in (("model", p_model), ("served", p_served)):
        if p is None:
            continue
        frac_pos, mean_pred = calibration_curve(y, p, n_bins=bins, strategy="uniform")
        ax.plot(mean_pred, frac_pos, "o-", lw=2, label=name)
        counts.hist(p, bins=bins, range=(0, 1), histtype="step", lw=1.5, label=name)
    ax.set(ylabel="Observed frequency", title="Reliability", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    counts.set(xlabel="Predicted probability", ylabel="patients")
    return _png(fig)


def decision_curve_png(curve) -> bytes:
    """Net benefit of the model against treat-all and treat-none (a ``thresholds.DecisionCurve``)."""
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.plot(curve.thresholds, curve.model, lw=2, label="model")
    ax.plot(curve.thresholds, curve.treat_all, lw=1, color="tab:orange", label="treat all")
    ax.plot(curve.thresholds, curve.treat_none, lw=1, color="grey", label="treat none")
    top = float(max(curve.model.max(), curve.treat_all.max(), 0.01))
    ax.set(xlabel="Threshold probability", ylabel="Net benefit", title="Decision curve", ylim=(-0.05 * top * 4, top * 1.1))
    ax.legend(loc="upper right")
    return _png(fig)


def evaluation_plots(y, p, threshold: float, labels: tuple[str, str]) -> dict[str, bytes]:
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    return {
        "roc.png": roc_png(y, p),
        "pr.png": pr_png(y, p),
        "confusion.png": confusion_png(y, p, threshold, labels),
        "calibration.png": calibration_png(y, p),
    }


def save_pngs(pngs: dict[str, bytes], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in pngs.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    return paths


def html_page(title: str, pngs: dict[str, bytes], table: dict[str, float] | None = None,
              extra_html: str = "") -> str:
    """A self-contained HTML page (images inlined) that the KFP UI can render as is."""
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v:.4f}</td></tr>" if isinstance(v, float)
        else f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in (table or {}).items()
    )
    images = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, data in pngs.items()
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:1.5em}figure{display:inline-block;margin:.5em}"
        "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}</style>"
        f"</head><body><h1>{html.escape(title)}</h1><table>{rows}</table>{images}{extra_html}</body></html>"
    )
