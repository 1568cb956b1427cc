"""Grad-CAM of the served TorchScript module, for the ``cam`` output.

``model.pt`` holds, as export writes it for EfficientNet, the submodules ``features`` (the convolutional
trunk: ``[N, C, h, w]`` maps), ``avgpool`` and ``classifier``; ``forward`` is
``classifier(flatten(avgpool(features(x))))`` plus the embedding. Grad-CAM weighs each map of the last
block by the mean gradient of the positive class's logit over it, keeps the positive part of the sum,
and resizes it to the input (bilinear), scaled to [0, 1] per image (all zero when nothing speaks for the
class). :func:`check` runs at load: a module without those parts, or whose parts do not give the same
logits as its ``forward``, has no ``cam`` output, and a request for one is a 400 naming why.
"""

from __future__ import annotations

import numpy as np

PARTS = ("features", "avgpool", "classifier")
LOGITS_ATOL = 1e-4  # the parts' logits against forward's, fp32, at load


def _run(module, x):
    import torch

    maps = module.features(x)
    embedding = torch.flatten(module.avgpool(maps), 1)
    logits = module.classifier(embedding)
    # a traced classifier may also return what it was given (the embedding is a second output of the trace)
    return maps, logits[0] if isinstance(logits, tuple) else logits, embedding


def check(module, example) -> str:
    """Why ``module`` cannot give Grad-CAM maps for inputs like ``example``; empty when it can."""
    import torch

    children = {name for name, _ in module.named_children()}
    missing = [part for part in PARTS if part not in children]
    if missing:
        return f"model.pt has no submodule '{missing[0]}' (Grad-CAM needs {', '.join(PARTS)})"
    try:
        with torch.inference_mode():
            maps, logits, _ = _run(module, example)
            expected, _ = module(example)
    except Exception as err:  # noqa: BLE001 - e.g. parts that cannot be called on their own: no cam, still served
        return f"model.pt's parts cannot be run one by one: {err}"
    if maps.dim() != 4:
        return f"model.pt's features give shape {list(maps.shape)}, not [N, C, h, w] maps"
    if not torch.allclose(logits.float(), expected.float(), atol=LOGITS_ATOL):
        return "model.pt's features → avgpool → classifier do not give its forward's logits"
    return ""


def cam(module, x, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(logits [N, K], embedding [N, D], cam [N, H, W] in [0, 1])`` for class ``target``."""
    import torch

    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone()
        maps, logits, embedding = _run(module, x)
        (grads,) = torch.autograd.grad(logits[:, target].sum(), maps)
    with torch.no_grad():
        weights = grads.mean(dim=(2, 3), keepdim=True)
        heat = torch.relu((weights * maps).sum(dim=1, keepdim=True))
        heat = torch.nn.functional.interpolate(heat.float(), size=tuple(x.shape[-2:]), mode="bilinear",
                                               align_corners=False)[:, 0]
        peak = heat.flatten(1).amax(dim=1).reshape(-1, 1, 1)
        heat = torch.where(peak > 0, heat / peak.clamp_min(1e-12), torch.zeros_like(heat))
    return (logits.detach().float().cpu().numpy(), embedding.detach().float().cpu().numpy(),
            heat.cpu().numpy().astype(np.float32))
