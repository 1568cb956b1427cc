"""Write the pneumonia serving bundle (see :mod:`components.common.bundle` for the layout).

``model.pt`` is TorchScript of :class:`~components.pneumonia.model.ServingModule`:
float32 [N, C, H, W] normalised → ``(logits [N, 2], embedding [N, D])``; P(pneumonia) =
softmax(logits)[:, 1]. ``schema.json`` is the preprocessing contract the transformer applies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from components.common import bundle
from components.pneumonia import loaders, preprocess
from components.pneumonia import model as model_lib
from components.pneumonia.labels import CLASSES, MODEL_NAME, POSITIVE, WORKLOAD

MODEL_FILE = "model.pt"
MODEL_CONFIG = "model_config.json"


def script_model(net: torch.nn.Module, contract: preprocess.ImageContract) -> torch.jit.ScriptModule:
    serving = model_lib.ServingModule(net).eval().float()
    example = torch.zeros(2, contract.channels, contract.height, contract.width)
    with torch.no_grad():
        return torch.jit.trace(serving, example, check_trace=False)


def schema(contract: preprocess.ImageContract, threshold: float) -> dict:
    return {
        "workload": WORKLOAD,
        "kind": "image",
        "input": {"name": "image", "datatype": "BYTES"},
        "image": {"height": contract.height, "width": contract.width, "channels": contract.channels,
                  "mean": list(contract.mean), "std": list(contract.std), "resize": contract.resize},
        "classes": list(CLASSES),
        "positive_class": POSITIVE,
        "threshold": float(threshold),
        "max_pixels": loaders.MAX_PIXELS,
    }


def write_bundle(folder: Path, net: torch.nn.Module, contract: preprocess.ImageContract, variant: str,
                 threshold: float, reference_softmax: np.ndarray, reference_embedding: np.ndarray,
                 model_version: str, metrics: dict, run_id: str | None, promoted: bool,
                 p_val: float = 0.05) -> bundle.BundleManifest:
    folder = Path(folder)
    (folder / bundle.DRIFT_DIR).mkdir(parents=True, exist_ok=True)
    scripted = script_model(net, contract)
    scripted.save(str(folder / MODEL_FILE))
    dim = int(reference_embedding.shape[1])
    bundle.write_json(folder, MODEL_CONFIG, {"variant": model_lib.variant_name(variant), "num_classes": 2,
                                             "classes": list(CLASSES), "embedding_dim": dim,
                                             "outputs": ["logits", "embedding"]})
    bundle.write_json(folder, bundle.SCHEMA, schema(contract, threshold))
    np.savez_compressed(folder / bundle.DRIFT_DIR / "reference.npz", x=reference_embedding.astype(np.float32),
                        embedding=reference_embedding.astype(np.float32),
                        softmax=reference_softmax.astype(np.float32))
    bundle.write_json(folder, f"{bundle.DRIFT_DIR}/settings.json", {
        # feature-wise KS with a Bonferroni correction runs on numpy alone (the sidecar has no torch)
        "detector": "KSDrift", "p_val": p_val, "correction": "bonferroni", "features": "embedding",
        "embedding_dim": dim, "n_reference": int(len(reference_embedding)),
        "also_available": ["softmax"], "positive_class": POSITIVE,
    })
    manifest = bundle.BundleManifest(workload=WORKLOAD, model_name=MODEL_NAME, model_version=str(model_version),
                                     framework="pytorch", model_file=MODEL_FILE, metrics=metrics,
                                     mlflow_run_id=run_id, promoted=promoted, extra_files=[MODEL_CONFIG])
    manifest.write(folder)
    bundle.check_complete(folder)
    return manifest
