import base64
from dataclasses import replace

import numpy as np
import pytest
from images import encode, png_bomb_header, random_image, reference_tensor
from kserve.protocol.infer_type import InferInput

import bundle
from inference.envelope import BadRequest
from inference.reasons import Reason
from inference.transformer.pneumonia import PneumoniaCodec
from inference.transformer.settings import TransformerSettings

pytestmark = pytest.mark.unit


@pytest.fixture()
def schema(pneumonia_bundle):
    return bundle.open_bundle(pneumonia_bundle, "pneumonia").schema


@pytest.fixture()
def codec(schema):
    return PneumoniaCodec(schema, TransformerSettings(workload="pneumonia"))


def image_input(files, b64=True):
    data = [base64.b64encode(f).decode() for f in files] if b64 else list(files)
    return [InferInput("image", [len(files)], "BYTES", data)]


@pytest.mark.parametrize(("fmt", "channels", "size"), [("PNG", 1, (40, 50)), ("JPEG", 3, (30, 90)),
                                                      ("PNG", 3, (24, 20))])
def test_grayscale_and_rgb_any_size_follow_the_bundle_contract(codec, schema, fmt, channels, size):
    data = encode(random_image(*size, channels=channels), fmt)
    tensor = codec.tensor(codec.parse(image_input([data, data])))
    image = schema.image
    expected = reference_tensor(data, image.height, image.width, image.channels, image.mean, image.std)
    assert codec.model_input == "input" and tensor.shape == (2, 1, 24, 20) and tensor.dtype == np.uint8
    normalised = codec.normalise(tensor)
    assert normalised.dtype == np.float32
    np.testing.assert_allclose(normalised[0], expected, atol=1e-6)
    np.testing.assert_array_equal(normalised[0], normalised[1])


def test_fp32_predictor_input_sends_the_normalised_tensor(schema):
    codec = PneumoniaCodec(schema, TransformerSettings(workload="pneumonia", predictor_input="fp32"))
    data = encode(random_image(30, 90, channels=3), "JPEG")
    tensor = codec.tensor(codec.parse(image_input([data])))
    image = schema.image
    expected = reference_tensor(data, image.height, image.width, image.channels, image.mean, image.std)
    assert tensor.dtype == np.float32 and tensor.shape == (1, 1, 24, 20)
    np.testing.assert_allclose(tensor[0], expected, atol=1e-6)


def test_normalise_has_known_values(schema):
    schema = replace(schema, image=replace(schema.image, channels=1, mean=(0.5,), std=(0.25,)))
    codec = PneumoniaCodec(schema, TransformerSettings(workload="pneumonia"))
    out = codec.normalise(np.array([0, 51, 255], dtype=np.uint8).reshape(1, 1, 1, 3))
    np.testing.assert_allclose(out.ravel(), [-2.0, -1.2, 2.0], atol=1e-6)


def test_raw_bytes_from_grpc_are_accepted(codec):
    data = encode(random_image(10, 10))
    tensor = codec.tensor(codec.parse(image_input([data], b64=False)))
    assert tensor.shape == (1, 1, 24, 20)


@pytest.mark.parametrize(("files", "reason", "fragment"), [
    ([b"not an image at all"], Reason.UNDECODABLE_IMAGE, "element 0: not a decodable JPEG or PNG"),
    ([encode(random_image(40, 40))[:80]], Reason.UNDECODABLE_IMAGE, "truncated or corrupt PNG"),
    ([png_bomb_header()], Reason.PIXEL_LIMIT, "image over the pixel limit of"),
    ([encode(random_image(8, 8), "BMP")], Reason.IMAGE_FORMAT, "BMP image; JPEG or PNG needed"),
    ([b""], Reason.IMAGE, "element 0: empty"),
])
def test_bad_images_are_rejected_by_name(codec, files, reason, fragment):
    with pytest.raises(BadRequest) as err:
        codec.tensor(codec.parse(image_input(files)))
    assert err.value.kind is reason and fragment in err.value.message


@pytest.mark.parametrize(("inputs", "reason", "fragment"), [
    ([InferInput("img", [1], "BYTES", ["x"])], Reason.MISSING_INPUT, "missing input 'image'"),
    (image_input([b"x"]) + [InferInput("extra", [1], "BYTES", ["x"])], Reason.UNKNOWN_INPUT, "unexpected input 'extra'"),
    (image_input([b"x"]) * 2, Reason.DUPLICATE_INPUT, "input 'image' appears more than once"),
    ([InferInput("image", [1], "FP32", [1.0])], Reason.DATATYPE, "datatype FP32; BYTES needed"),
    ([InferInput("image", [1, 1], "BYTES", ["eA=="])], Reason.SHAPE, "must be [N]"),
    ([InferInput("image", [1], "BYTES", ["***"])], Reason.BASE64, "not valid base64"),
    ([InferInput("image", [2], "BYTES", ["eA=="])], Reason.SHAPE, "1 elements do not fit shape [2]"),
])
def test_malformed_requests(codec, inputs, reason, fragment):
    with pytest.raises(BadRequest) as err:
        codec.tensor(codec.parse(inputs))
    assert err.value.kind is reason and fragment in err.value.message


def test_pixel_limit_is_configurable(schema):
    codec = PneumoniaCodec(schema, TransformerSettings(workload="pneumonia", max_pixels=100))
    with pytest.raises(BadRequest, match="over the pixel limit of 100: 11x10 = 110 pixels"):
        codec.tensor(codec.parse(image_input([encode(random_image(10, 11))])))


def test_decode_is_softmax_and_threshold(codec):
    logits = np.array([[2.0, 0.0], [0.0, 3.0]])
    tensors, class_index = codec.decode({"logits": logits, "embedding": np.zeros((2, 4))})
    expected = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    np.testing.assert_allclose(tensors["probability"], expected, rtol=1e-6)
    assert tensors["label"].tolist() == ["NORMAL", "PNEUMONIA"]
    assert [codec.class_labels[i] for i in class_index] == ["NORMAL", "PNEUMONIA"]
