"""Grad-CAM from the PyTorch predictor and the transformer's heatmap outputs: the map peaks on what the
model looks at (a net that answers to a planted bright opacity), only when asked for, and a model
without the parts Grad-CAM needs says why."""

import asyncio
import base64
import io

import numpy as np
import pytest
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput
from PIL import Image
from support import sample_bundles

from inference.errors import RejectedInput
from inference.reasons import Reason
from inference.torch_predictor.model import TorchPredictor
from inference.torch_predictor.settings import TorchPredictorSettings
from inference.transformer import heatmap

pytestmark = pytest.mark.unit
HEIGHT, WIDTH = 32, 28


@pytest.fixture(scope="module")
def opacity_bundle(tmp_path_factory):
    return sample_bundles.write_pneumonia(tmp_path_factory.mktemp("opacity"), HEIGHT, WIDTH, 1,
                                          module=sample_bundles.opacity_net(1, 4), embedding_dim=4)


def predictor(folder):
    model = TorchPredictor(TorchPredictorSettings(model_name="pneumonia", bundle=str(folder), device="cpu",
                                                  max_batch_size=8))
    model.load()
    return model


def pixel_request(pixels, outputs=()):
    tensor = InferInput("input", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels, binary_data=False)
    return InferRequest(model_name="pneumonia", infer_inputs=[tensor],
                        request_outputs=[RequestedOutput(name) for name in outputs] or None)


def call(model, request):
    response, _ = asyncio.run(model(request))
    return {out.name: out.as_numpy() for out in response.outputs}


def planted(n, seed=0):
    rng = np.random.default_rng(seed)
    images, disks = zip(*(sample_bundles.opacity_image(rng, HEIGHT, WIDTH) for _ in range(n)), strict=True)
    return np.stack(images)[:, None], disks


def test_the_cam_peaks_inside_the_planted_opacity_on_every_image(opacity_bundle):
    model = predictor(opacity_bundle)
    pixels, disks = planted(12)
    out = call(model, pixel_request(pixels, ("logits", "cam")))
    plain = call(model, pixel_request(pixels))
    np.testing.assert_allclose(out["logits"], plain["logits"], rtol=1e-5, atol=1e-5)  # the same answer
    cam = out["cam"]
    assert cam.shape == (12, HEIGHT, WIDTH) and cam.min() >= 0 and np.allclose(cam.max(axis=(1, 2)), 1.0)
    inside = 0
    for heat, (cx, cy, radius) in zip(cam, disks, strict=True):
        y, x = np.unravel_index(heat.argmax(), heat.shape)
        inside += (x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2
    assert inside == 12  # a rate of 1: this net sees nothing but the opacity
    model.stop()


def test_the_cam_is_computed_only_when_asked(opacity_bundle):
    model = predictor(opacity_bundle)
    pixels, _ = planted(2, seed=1)
    assert set(call(model, pixel_request(pixels))) == {"logits", "embedding"}
    assert model.cam_batchers[True].batches == 0
    call(model, pixel_request(pixels, ("cam",)))
    assert model.cam_batchers[True].batches == 1
    model.stop()


def test_a_module_without_the_grad_cam_parts_refuses_a_cam_naming_why(tmp_path):
    folder = sample_bundles.write_pneumonia(tmp_path / "tiny", HEIGHT, WIDTH, 1)  # features end pooled
    model = predictor(folder)
    assert "model.pt has no submodule 'avgpool'" in model.no_cam
    assert "cam" not in [o["name"] for o in model.get_output_types()]
    with pytest.raises(RejectedInput) as err:
        call(model, pixel_request(planted(1)[0], ("cam",)))
    assert err.value.kind == Reason.UNKNOWN_OUTPUT
    assert "this model gives no cam: model.pt has no submodule 'avgpool'" in str(err.value)
    model.stop()


def test_hot_region_boxes_the_map_above_half_its_peak_as_fractions():
    heat = np.zeros((20, 10))
    heat[4:8, 2:5] = 1.0
    heat[9, 9] = 0.4  # under half the peak: outside the region
    np.testing.assert_allclose(heatmap.hot_region(heat), [0.2, 0.2, 0.5, 0.4])
    assert heatmap.hot_region(np.zeros((5, 5))).tolist() == [0, 0, 0, 0]


def test_the_heatmap_png_is_the_image_at_the_model_size_coloured_where_the_map_is_hot():
    rng = np.random.default_rng(2)
    image, (cx, cy, _) = sample_bundles.opacity_image(rng, HEIGHT, WIDTH)
    heat = np.zeros((HEIGHT, WIDTH), dtype=np.float32)
    heat[cy, cx] = 1.0
    made = heatmap.outputs(image[None, None], heat[None], np.zeros((1, 1, 1)), np.ones((1, 1, 1)), text=False)
    png = Image.open(io.BytesIO(made["heatmap"][0]))
    assert png.format == "PNG" and png.size == (WIDTH, HEIGHT)
    rgb = np.asarray(png.convert("RGB")).astype(int)
    red, green, blue = rgb[cy, cx]
    assert red > green + 60 and red > blue + 60  # red on the peak (jet's top end)
    cold = (cy + HEIGHT // 2) % HEIGHT, (cx + WIDTH // 2) % WIDTH
    assert len(set(rgb[cold].tolist())) == 1  # grey where the map is zero: the image itself
    text = heatmap.outputs(image[None, None], heat[None], np.zeros((1, 1, 1)), np.ones((1, 1, 1)), text=True)
    assert base64.b64decode(text["heatmap"][0]) == made["heatmap"][0]
    only_region = heatmap.outputs(image[None, None], heat[None], np.zeros((1, 1, 1)), np.ones((1, 1, 1)), text=True,
                                  png=False)
    assert set(only_region) == {"hot_region"}


def test_grad_cam_works_on_the_module_export_writes():
    """The traced EfficientNet of a real bundle: its traced classifier also returns its input."""
    import torch

    from components.pneumonia import export, preprocess
    from components.pneumonia import model as model_lib
    from inference.torch_predictor import gradcam

    torch.manual_seed(0)
    net = model_lib.build_model("efficientnet_b0", 1, 2).eval()
    buffer = io.BytesIO()
    torch.jit.save(export.script_model(net, preprocess.ImageContract(64, 64, 1, (0.5,), (0.25,))), buffer)
    buffer.seek(0)
    module = torch.jit.load(buffer).eval()  # as the predictor loads model.pt
    x = torch.randn(2, 1, 64, 64)
    assert gradcam.check(module, x) == ""
    logits, embedding, heat = gradcam.cam(module, x, target=1)
    expected_logits, expected_embedding = module(x)
    np.testing.assert_allclose(logits, expected_logits.detach().numpy(), atol=1e-4)
    np.testing.assert_allclose(embedding, expected_embedding.detach().numpy(), atol=1e-4)
    assert heat.shape == (2, 64, 64) and heat.min() >= 0 and heat.max() <= 1
