"""Write the pneumonia serving bundle through the bundle contract's writer (layout: ``bundle.layout``).

``model.pt`` is TorchScript of :class:`~components.pneumonia.model.ServingModule`:
float32 [N, C, H, W] normalised → ``(logits [N, 2], embedding [N, D])``; P(pneumonia) =
softmax(logits)[:, 1]. ``schema.json`` is the preprocessing contract the transformer applies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bundle import BundleWriter, Manifest, TorchModelConfig, layout
from bundle.calibration import Calibration
from bundle.drift import KSDriftSettings
from bundle.schema import ImagePreprocessing, ImageSchema
from components.pneumonia import loaders, preprocess
from components.pneumonia import model as model_lib
from components.pneumonia.labels import CLASSES, MODEL_NAME, POSITIVE, WORKLOAD


def script_model(net: torch.nn.Module, contract: preprocess.ImageContract) -> torch.jit.ScriptModule:
    serving = model_lib.ServingModule(net).eval().float()
    example = torch.zeros(2, contract.channels, contract.height, contract.width)
    with torch.no_grad():
        return torch.jit.trace(serving, example, check_trace=False)


def schema(contract: preprocess.ImageContract, threshold: float) -> ImageSchema:
    image = ImagePreprocessing(contract.height, contract.width, contract.channels, tuple(contract.mean),
                               tuple(contract.std), contract.resize)
    return ImageSchema(WORKLOAD, image, classes=tuple(CLASSES), positive_class=POSITIVE, threshold=float(threshold),
                       max_pixels=loaders.MAX_PIXELS)


def write_bundle(folder: Path, net: torch.nn.Module, contract: preprocess.ImageContract, variant: str,
                 threshold: float, reference_softmax: np.ndarray, reference_embedding: np.ndarray,
                 model_version: str, metrics: dict, run_id: str | None, promoted: bool,
                 p_val: float = 0.05, calibration: Calibration | None = None) -> Manifest:
    """``calibration``, when given, is written as ``calibration.json`` (the transformer applies it to the softmax
    probability); its operating point's threshold is the schema's."""
    if calibration is not None and calibration.operating_point is not None:
        threshold = calibration.operating_point.threshold
    writer = BundleWriter(folder, WORKLOAD, layout.PYTORCH, MODEL_NAME, str(model_version))
    script_model(net, contract).save(str(writer.model_path))
    dim = int(reference_embedding.shape[1])
    writer.write_model_config(TorchModelConfig(model_lib.variant_name(variant), tuple(CLASSES), dim))
    writer.write_schema(schema(contract, threshold))
    if calibration is not None:
        writer.write_calibration(calibration)
    np.savez_compressed(writer.drift_reference_path, embedding=reference_embedding.astype(np.float32),
                        softmax=reference_softmax.astype(np.float32))
    # feature-wise KS with a Bonferroni correction runs on numpy alone (the sidecar has no torch)
    writer.write_drift(KSDriftSettings("embedding", dim, p_val=p_val, correction="bonferroni"))
    return writer.finish(metrics=metrics, mlflow_run_id=run_id, promoted=promoted)
