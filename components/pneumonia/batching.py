"""Batch size per device sized for the EfficientNet variant, and the learning rate scaled with the batch.

``batch_size: 0`` in the training options asks for these. Activation memory grows with the pixels of
an image, so the per-GPU batch at the variant's native resolution is scaled by ``(native / size)²``
for other sizes. The table is a starting point for a 40–80 GB GPU under bf16 autocast, not a
measurement of this project: an explicit ``batch_size`` always wins.

The default learning rate was chosen at ``lr_reference_batch`` (16 images); a larger batch takes fewer,
less noisy steps and tolerates a larger rate. ``linear`` is Goyal et al.'s rule for SGD; ``sqrt`` the
square-root rule that adaptive optimisers (AdamW) follow (Malladi et al., 2022).
"""

from __future__ import annotations

import math

# variant → (native image size, images per GPU at that size)
PER_GPU: dict[str, tuple[int, int]] = {
    "efficientnet_b0": (224, 256),
    "efficientnet_b1": (240, 192),
    "efficientnet_b2": (260, 160),
    "efficientnet_b3": (300, 112),
    "efficientnet_b4": (380, 64),
}
CPU_BATCH = 16  # per CPU worker: two cores gain nothing from larger batches
LR_RULES = ("none", "linear", "sqrt")


def per_device_batch(variant: str, image_size: int, device_type: str) -> int:
    """Images per worker for ``variant`` at ``image_size`` px: from the table on CUDA (a multiple of 8,
    at least 8), :data:`CPU_BATCH` elsewhere."""
    if device_type != "cuda":
        return CPU_BATCH
    native, batch = PER_GPU[variant]
    scaled = batch * (native / image_size) ** 2
    return int(max(8, min(1024, 8 * round(scaled / 8))))


def scaled_lr(lr: float, batch: int, reference_batch: int, rule: str) -> float:
    """``lr`` (chosen at ``reference_batch``) for a global ``batch`` under ``rule``."""
    if rule not in LR_RULES:
        raise ValueError(f"unknown lr_scaling {rule!r} ({', '.join(LR_RULES)})")
    ratio = batch / reference_batch
    return lr * {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[rule]
