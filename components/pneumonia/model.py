"""torchvision EfficientNet-B0…B4 with a 2-class head, a 1- or 3-channel stem, and the serving
wrapper whose ``forward`` returns ``(logits, embedding)``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

VARIANTS = ("efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4")


def variant_name(variant: str) -> str:
    """``"b0"`` or ``"efficientnet_b0"`` → ``"efficientnet_b0"``."""
    name = variant if variant.startswith("efficientnet_") else f"efficientnet_{variant}"
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    return name


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_state", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no state dict")
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}


def build_model(variant: str = "efficientnet_b0", in_channels: int = 1, num_classes: int = 2,
                dropout: float = 0.2, weights_path: str | None = None) -> nn.Module:
    """A fresh EfficientNet (``weights=None``), or one started from a local weights file.

    A 3-channel (ImageNet) stem is folded to 1 channel by summing its filters, which keeps the
    response to a grey image equal to the response to that image replicated on three channels.
    The head of a file with another class count is left out and trained from scratch.
    """
    import torchvision

    model = getattr(torchvision.models, variant_name(variant))(weights=None, dropout=dropout)
    if weights_path:
        state = _read_state_dict(Path(weights_path))
        own = model.state_dict()
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        missing = [k for k in own if k not in usable and not k.startswith("classifier.")]
        if missing:
            raise ValueError(f"{weights_path} does not fit {variant}: {len(missing)} tensors missing, "
                             f"e.g. {missing[0]}")
        model.load_state_dict(usable, strict=False)
    stem: nn.Conv2d = model.features[0][0]
    if in_channels != stem.in_channels:
        new = nn.Conv2d(in_channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding,
                        bias=stem.bias is not None)
        with torch.no_grad():
            if in_channels == 1:
                new.weight.copy_(stem.weight.sum(dim=1, keepdim=True))
            else:
                new.weight.copy_(stem.weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1))
        model.features[0][0] = new
    head: nn.Linear = model.classifier[-1]
    if head.out_features != num_classes:
        model.classifier[-1] = nn.Linear(head.in_features, num_classes)
    return model


def embedding_dim(model: nn.Module) -> int:
    return unwrap(model).classifier[-1].in_features


def unwrap(model: nn.Module) -> nn.Module:
    """The plain EfficientNet inside DDP and/or ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        else:
            return model


def logits_and_embedding(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The penultimate pooled features and the logits computed from them (one forward pass)."""
    net = unwrap(model)
    embedding = torch.flatten(net.avgpool(net.features(x)), 1)
    return net.classifier(embedding), embedding


class ServingModule(nn.Module):
    """What ``model.pt`` holds: float32 [N, C, H, W] normalised → (logits [N, 2], embedding [N, D])."""

    def __init__(self, model: nn.Module):
        super().__init__()
        net = unwrap(model)
        self.features = net.features
        self.avgpool = net.avgpool
        self.classifier = net.classifier

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(embedding), embedding
