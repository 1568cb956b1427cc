"""Register the trained model in MLflow (pytorch flavour, with a signature) and run the shared gate,
which re-scores the current champion on this run's test split."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from components.common import gate, registry
from components.common import metrics as metrics_lib
from components.common.clinical.bootstrap import DEFAULT_RESAMPLES
from components.pneumonia import preprocess, split
from components.pneumonia.labels import MODEL_NAME, WORKLOAD

EXPERIMENT = WORKLOAD


def _requirements() -> list[str]:
    # Given explicitly: MLflow's inference of them re-loads the model in a subprocess (slow, and the
    # answer is known).
    import torchvision

    return [f"torch=={torch.__version__.split('+')[0]}", f"torchvision=={torchvision.__version__.split('+')[0]}"]


@torch.no_grad()
def logits_model_probabilities(net, images: np.ndarray, contract: preprocess.ImageContract) -> np.ndarray:
    """P(pneumonia) of a model whose ``forward`` returns logits (what the MLflow flavour holds)."""
    net.eval()
    probs = []
    for start in range(0, len(images), 64):
        x = torch.from_numpy(preprocess.normalise(images[start:start + 64], contract))
        out = net(x)
        logits = out[0] if isinstance(out, tuple) else out
        probs.append(torch.softmax(logits.float(), 1)[:, 1].numpy())
    return np.concatenate(probs)


def score_logits_model(net, images: np.ndarray, labels: np.ndarray, contract: preprocess.ImageContract) -> float:
    """ROC-AUC of a model whose ``forward`` returns logits."""
    return metrics_lib.binary_metrics(labels, logits_model_probabilities(net, images, contract))["roc_auc"]


def register_model(net: torch.nn.Module, splits_dir: Path, test_metrics: dict[str, float], params: dict,
                   history: list[dict], artifacts: list[Path] = (), tags: dict[str, str] | None = None,
                   run_name: str = "pneumonia") -> registry.RegisteredVersion:
    """One MLflow run (params, test metrics, the chosen trial's per-epoch curves, plots) and a new
    registered version of the model in the pytorch flavour with its signature."""
    import mlflow
    import mlflow.pytorch
    from mlflow.models import infer_signature

    contract = split.load_contract(splits_dir)
    example = preprocess.normalise(split.load(splits_dir, "test").x[:2], contract)
    net = net.eval()
    with torch.no_grad():
        signature = infer_signature(example, net(torch.from_numpy(example)).numpy())

    def log_model(model_name: str):
        for row in history:
            mlflow.log_metrics({f"epoch_{k}": float(v) for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
        # pickle, not pt2: a torch.export graph fixes the batch size, and the gate re-scores champions
        # on whole test splits; serving reads the bundle's TorchScript, not this flavour
        return mlflow.pytorch.log_model(net, name="model", registered_model_name=model_name, signature=signature,
                                        pip_requirements=_requirements(), serialization_format="pickle")

    return registry.log_and_register(EXPERIMENT, MODEL_NAME, run_name, params, test_metrics, log_model,
                                     artifacts=list(artifacts), tags=tags)


def gate_model(version: str, splits_dir: Path, test_metrics: dict[str, float], floors: str | dict,
               candidate_p: list[float] | None = None, n_resamples: int = DEFAULT_RESAMPLES,
               seed: int = 0) -> gate.GateDecision:
    """The shared gate; the current champion is re-scored on this run's test split, and with the candidate's own
    test probabilities (``candidate_p``) compared with it image by image (paired bootstrap of ``n_resamples``
    resamples drawn with ``seed``: the evaluate step's settings)."""
    import mlflow.pytorch

    from components.common.clinical import paired

    registry.configure(EXPERIMENT)
    contract = split.load_contract(splits_dir)
    test = split.load(splits_dir, "test")

    def score_champion(model_uri: str) -> float | paired.PairedComparison | None:
        with tempfile.TemporaryDirectory() as download:  # MLflow's own default folder is never removed
            champion = mlflow.pytorch.load_model(model_uri, dst_path=download, map_location="cpu")
        if candidate_p is None:
            return score_logits_model(champion, test.x, test.y, contract)
        return paired.compare_roc_auc(test.y, candidate_p, logits_model_probabilities(champion, test.x, contract),
                                      n_resamples=n_resamples, seed=seed)

    return gate.run_gate(MODEL_NAME, version, test_metrics, gate.parse_floors(floors), score_champion,
                         primary="roc_auc")
