"""Where the served Grad-CAM looks (``make eval-gradcam``; an evaluation, not a test).

Phantom pneumonia X-rays (:func:`components.pneumonia.phantom.render_with_opacities`: the opacities'
centres and sizes are known) are resized as the transformer does and explained by the champion bundle's
``model.pt`` through the predictor's own Grad-CAM (:mod:`inference.torch_predictor.gradcam`, the last
feature block). A hit: the map's peak lies within one opacity's sigma of its centre. The same rate is
printed for the earlier feature blocks too, with their map sizes, since a small input leaves the last
block only a few cells (2x2 at 64 px) to place a peak in.

Settings: ``EVAL_GRADCAM_IMAGES`` (200), ``EVAL_GRADCAM_BUNDLE`` (default: the pneumonia champion under
``$CLINOPS_HOME``). Writes ``$CLINOPS_HOME/bench/gradcam.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

from bundle import champion, layout, open_bundle  # noqa: E402
from components.common.settings import get_settings  # noqa: E402
from components.pneumonia import phantom  # noqa: E402
from inference.torch_predictor import gradcam  # noqa: E402

IMAGES = int(os.environ.get("EVAL_GRADCAM_IMAGES", "200"))


def champion_folder() -> Path:
    pointer = champion.read(str(get_settings().home / "bundles"), "pneumonia")
    if pointer is None:
        raise SystemExit("no pneumonia champion: run `make run` first, or set EVAL_GRADCAM_BUNDLE")
    return Path(pointer.bundle_uri)


def inputs(schema, n: int, seed: int = 123):
    from PIL import Image

    image = schema.image
    rng = np.random.default_rng(seed)
    for _ in range(n):
        picture, opacities = phantom.render_with_opacities(rng, 128, 128, True)
        small = Image.fromarray((picture * 255).round().astype(np.uint8)).resize((image.width, image.height),
                                                                               Image.BILINEAR)
        x = (np.asarray(small, dtype=np.float32) / 255 - image.mean[0]) / image.std[0]
        yield x[None, None], opacities


def hit(heat: np.ndarray, opacities) -> bool:
    y, x = np.unravel_index(heat.argmax(), heat.shape)
    fy, fx = (y + 0.5) / heat.shape[0], (x + 0.5) / heat.shape[1]
    return min(np.hypot(fy - by, fx - bx) / sigma for by, bx, sigma in opacities) <= 1.0


def block_cam(module, x, k: int, target: int = 1) -> tuple[np.ndarray, tuple]:
    """Grad-CAM on the output of feature block ``k`` (the served map is the last block's)."""
    import torch

    blocks = list(module.features.children())
    with torch.enable_grad():
        h = x
        for block in blocks[:k]:
            h = block(h)
        maps = h
        for block in blocks[k:]:
            h = block(h)
        logits = module.classifier(torch.flatten(module.avgpool(h), 1))
        logits = logits[0] if isinstance(logits, tuple) else logits
        (grads,) = torch.autograd.grad(logits[:, target].sum(), maps)
    heat = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * maps).sum(1, keepdim=True))
    heat = torch.nn.functional.interpolate(heat, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
    return heat[0, 0].detach().numpy(), tuple(maps.shape[-2:])


def main() -> int:
    import torch

    folder = Path(os.environ.get("EVAL_GRADCAM_BUNDLE") or champion_folder())
    served = open_bundle(folder, "pneumonia", layout.PYTORCH)
    module = torch.jit.load(str(served.model_path), map_location="cpu").eval()
    data = [(torch.from_numpy(x), opacities) for x, opacities in inputs(served.schema, IMAGES)]
    reason = gradcam.check(module, data[0][0])
    if reason:
        print(f"no Grad-CAM for {folder}: {reason}")
        return 1
    served_hits = sum(hit(gradcam.cam(module, x, 1)[2][0], ops) for x, ops in data)
    print(f"bundle {folder} · {IMAGES} phantom pneumonia images · input {served.schema.image.height}x"
          f"{served.schema.image.width}")
    print(f"served Grad-CAM (last block): peak within an opacity's sigma in {served_hits}/{IMAGES} "
          f"= {served_hits / IMAGES:.0%}")
    blocks = {}
    for k in range(1, len(list(module.features.children())) + 1):
        rate, size = 0, None
        for x, ops in data:
            heat, size = block_cam(module, x, k)
            rate += hit(heat, ops)
        blocks[k] = {"maps": list(size), "rate": rate / IMAGES}
        print(f"  block {k:2d}: maps {size[0]}x{size[1]} · {rate / IMAGES:.0%}")
    out = get_settings().home / "bench" / "gradcam.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bundle": str(folder), "images": IMAGES, "served_rate": served_hits / IMAGES,
                               "blocks": blocks}, indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
