"""Evaluate a trained model exactly as serving will run it: normalise with the contract, forward,
softmax, then the recalibration fitted on validation (Platt or isotonic when it lowers the Brier score
there, else none; the bundle's ``calibration.json``). The served threshold is the highest that reaches the
target sensitivity on validation's recalibrated scores; test metrics, and the verdicts on the Grad-CAM
overlays of a few test images (where the model looks), use that probability and that threshold.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import torch

from bundle.calibration import Calibration
from components.common import metrics as metrics_lib
from components.pneumonia import model as model_lib
from components.pneumonia import preprocess, split, train_loop
from components.pneumonia.labels import CLASSES


def load_trained(model_dir: Path, in_channels: int) -> torch.nn.Module:
    """The best weights of a training run (``best_model.pt`` + ``train_config.json``), in eval mode."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / train_loop.CONFIG).read_text())
    net = model_lib.build_model(config["variant"], in_channels, 2, config["dropout"])
    net.load_state_dict(torch.load(model_dir / train_loop.BEST, map_location="cpu", weights_only=True))
    return net.eval()


@torch.no_grad()
def predict(net, images: np.ndarray, contract: preprocess.ImageContract, batch_size: int = 64):
    """uint8 (N, H, W, C) → (softmax (N, 2), embeddings (N, D)), through ``logits_and_embedding``."""
    net.eval()
    softmax, embeddings = [], []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(preprocess.normalise(images[start:start + batch_size], contract))
        logits, embedding = model_lib.logits_and_embedding(net, x)
        softmax.append(torch.softmax(logits.float(), 1).numpy())
        embeddings.append(embedding.float().numpy())
    dim = model_lib.embedding_dim(net)
    if not softmax:
        return np.zeros((0, 2), np.float32), np.zeros((0, dim), np.float32)
    return np.concatenate(softmax), np.concatenate(embeddings)


TARGET_SENSITIVITY = 0.90  # the served threshold's meaning: at most one pneumonia in ten missed (on val)
BOOTSTRAP_RESAMPLES = 1000
NO_SOURCE_SUBGROUPS = ("every image of a run comes from one source ({format} layout: the generated phantom set, "
                       "Kermany/Kaggle folders or a MedMNIST file); the data carry no per-image source or "
                       "acquisition attribute, so no subgroup by it can be formed")


def evaluate(net, splits_dir: Path, target_sensitivity: float = TARGET_SENSITIVITY,
             n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict:
    """The clinical assessment: recalibration and the threshold for ``target_sensitivity`` fitted on val,
    intervals and calibration on test; returns a JSON-able dict with the per-image test scores (the model's
    and the served, recalibrated ones), the bundle's calibration and the card's Markdown and HTML."""
    from components.common.clinical import assessment, card
    from components.common.clinical import calibration as calibration_lib

    contract = split.load_contract(splits_dir)
    val, test = split.load(splits_dir, "val"), split.load(splits_dir, "test")
    p_val = predict(net, val.x, contract)[0][:, 1]
    p_test = predict(net, test.x, contract)[0][:, 1]
    summary = json.loads((Path(splits_dir) / split.SUMMARY_FILE).read_text())
    result = assessment.assess(test.y, p_test, val.y, p_val, target_sensitivity,
                               no_subgroups={"image source": NO_SOURCE_SUBGROUPS.format(
                                   format=summary.get("format", "unknown"))},
                               n_resamples=n_resamples, seed=seed)
    val_auc = metrics_lib.binary_metrics(val.y, p_val)["roc_auc"]
    contract_file = calibration_lib.to_contract(result.recalibration, target_sensitivity, result.threshold,
                                                "the validation split")
    return {"threshold": result.threshold, "metrics": result.flat_metrics() | {"val_roc_auc": val_auc},
            "y_test": test.y.tolist(), "p_test": result.p.tolist(), "p_test_model": p_test.tolist(),
            "calibration": contract_file.to_dict(), "card_markdown": card.markdown(result),
            "card_html": card.html_sections(result)}


CARD_TRAINING_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "dropout", "schedule")


def model_card(result: dict, train_config: dict, summary: dict) -> str:
    """The model card (Markdown: the KFP UI's and MLflow's): intended use, model, data, then the clinical
    sections of :func:`evaluate`'s ``result`` (intervals, calibration, operating points, decision curve,
    subgroups) and the limitations. ``train_config``: the run's ``train_config.json``; ``summary``: the
    splits' ``summary.json``."""
    contract, m = summary["contract"], result["metrics"]
    params = {k: train_config[k] for k in CARD_TRAINING_KEYS if k in train_config}
    rows = "\n".join(f"| {name} | {c['n']} | {c['positives']} |" for name, c in summary["counts"].items())
    return f"""# Model card — pneumonia on chest X-rays

## Intended use
Estimates the probability that a frontal chest X-ray shows pneumonia, to help order a reading list:
it supports a radiologist's read and never replaces it. The reference data are paediatric
(Kermany/Kaggle, MedMNIST); the model is not validated on adults or on other views.

## Model
- torchvision **{train_config.get("variant", "?")}** on {contract["channels"]}-channel \
{contract["height"]}×{contract["width"]} images normalised with the training split's mean and std \
(the bundle's input schema); training settings: `{params}`
- Optuna compared Ray Train trials on validation ROC-AUC; this model's: **{m["val_roc_auc"]:.4f}**.

## Data
{summary.get("format", "unknown")} layout; images per split after corrupt and leaked images were dropped:

| split | images | with pneumonia |
|---|---|---|
{rows}

{result["card_markdown"]}
## Limitations
Validation chose both the recalibration and the threshold, so its figures are optimistic; the test
split's, with their intervals, are the estimate. One source per run: no subgroup by hospital or device
can be formed, and performance on another population is unknown. Monitor drift in production.
"""


def grad_cam(net, x: torch.Tensor, target: int = 1) -> np.ndarray:
    """Grad-CAM of class ``target`` on the last feature block: (N, H, W) in [0, 1]."""
    net = model_lib.unwrap(net).eval()
    x = x.clone().requires_grad_(False)
    with torch.enable_grad():
        features = net.features(x)
        features.retain_grad()
        logits = net.classifier(torch.flatten(net.avgpool(features), 1))
        logits[:, target].sum().backward()
    weights = features.grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * features).sum(1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    cam = cam.detach().numpy()
    peak = cam.reshape(len(cam), -1).max(1).reshape(-1, 1, 1)
    return np.where(peak > 0, cam / np.maximum(peak, 1e-12), 0.0)


def _pick(y: np.ndarray, p: np.ndarray, threshold: float, n: int) -> list[int]:
    """A few telling examples: confident hits on each class, then the worst mistakes."""
    order = []
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    order += list(pos[np.argsort(-p[pos])][:2]) + list(neg[np.argsort(p[neg])][:1])
    wrong = np.flatnonzero((p >= threshold) != (y == 1))
    order += list(wrong[np.argsort(-np.abs(p[wrong] - threshold))][:2])
    order += list(pos[np.argsort(p[pos])][:1])
    seen, picked = set(), []
    for i in order:
        if int(i) not in seen:
            seen.add(int(i))
            picked.append(int(i))
    return picked[:n]


def gradcam_html(net, splits_dir: Path, threshold: float, calibration: Calibration, n: int = 6) -> str:
    """Grad-CAM overlays of a few test images, each labelled as serving labels it: the model's probability
    through ``calibration`` (the bundle's map), against ``threshold``, which is on that served scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    contract = split.load_contract(splits_dir)
    test = split.load(splits_dir, "test")
    p_model = predict(net, test.x, contract)[0][:, 1]
    p = np.array([calibration.apply_one(float(v)) for v in p_model])
    chosen = _pick(test.y, p, threshold, n)
    cams = grad_cam(net, torch.from_numpy(preprocess.normalise(test.x[chosen], contract)))
    figures = []
    for i, cam in zip(chosen, cams, strict=True):
        fig, axes = plt.subplots(1, 2, figsize=(5, 2.7))
        image = test.x[i][..., 0] if contract.channels == 1 else test.x[i]
        axes[0].imshow(image, cmap="gray")
        axes[1].imshow(image, cmap="gray")
        axes[1].imshow(cam, cmap="jet", alpha=0.45)
        for ax in axes:
            ax.axis("off")
        actual, verdict = CLASSES[test.y[i]], CLASSES[int(p[i] >= threshold)]
        fig.suptitle(f"test #{i}: actual {actual}, predicted {verdict} (P={p[i]:.2f})", fontsize=8)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        figures.append(f'<figure><img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'
                       f"<figcaption>actual {html.escape(actual)} · predicted {html.escape(verdict)} · "
                       f"P(pneumonia) {p[i]:.3f} (model {p_model[i]:.3f})</figcaption></figure>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Grad-CAM</title><style>body{font-family:"
            "sans-serif;margin:1.5em}figure{display:inline-block;margin:.5em}</style></head><body>"
            f"<h1>Grad-CAM ({CLASSES[1]} class), threshold {threshold:.3f}</h1>"
            "<p>Warm colours: regions that raise P(pneumonia) most, from the last convolutional block. "
            f"P(pneumonia) is the served probability (recalibration: {html.escape(calibration.method)}), the "
            "scale the threshold is on; the model's own softmax is in brackets.</p>"
            + "".join(figures) + "</body></html>")
