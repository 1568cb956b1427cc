"""pneumonia: chest X-ray image files in, P(pneumonia) and label out.

Request: one input ``image``, BYTES ``[N]``, each element a JPEG or PNG file (base64 text in JSON;
raw bytes with the binary-data extension or over gRPC). Each image is checked (format, header size
against the pixel limit and all headers together against the request's decode budget before decoding,
truncation), converted to L or RGB and resized bilinearly to the
bundle's H×W. The predictor gets the pixels as UINT8 ``[N, C, H, W]`` (a quarter of the FP32 bytes) and
scales them to [0, 1] and normalises them by the bundle's mean/std itself, in torch; with
``--predictor_input fp32`` the transformer sends them already normalised (FP32), as older predictors
expect. Both give the same tensor to the model (:meth:`PneumoniaCodec.normalise` is that step in numpy).
"""

from __future__ import annotations

import io

import numpy as np

from bundle.schema import ImageSchema
from inference.envelope import BadRequest
from inference.reasons import Reason
from inference.transformer import heatmap, tensors
from inference.transformer.calibration import served_probability

FORMATS = {"JPEG", "PNG"}


class PneumoniaCodec:
    """The codec of image workloads: image files decoded and resized as the schema's preprocessing says."""

    predictor_output = "logits"
    model_input = "input"  # the predictor's input tensor
    heavy = True  # decoding images runs in a worker thread
    dispatch = "full"  # a forward pass is expensive: a further call only with a full batch
    # a client output computed only when requested -> the predictor outputs it is made of
    explain_outputs = {"heatmap": ("cam",), "hot_region": ("cam",)}

    def parse(self, inputs) -> list[bytes]:
        return self.files(inputs)

    def tensor(self, files: list[bytes]) -> np.ndarray:
        pixels = self.encode_files(files)
        return pixels if self.send_pixels else self.normalise(pixels)

    def __init__(self, schema: ImageSchema, settings, calibration=None):
        from PIL import Image

        self.calibration = calibration  # bundle.calibration.Calibration: the served probability's map
        image = schema.image  # channels 1 or 3, checked by the contract
        self.input_name = schema.input_name  # the client's input: BYTES [N] of image files
        self.height, self.width, self.channels = image.height, image.width, image.channels
        self.mode = "L" if self.channels == 1 else "RGB"
        self.mean = np.asarray(image.mean, dtype=np.float32).reshape(self.channels, 1, 1)
        self.std = np.asarray(image.std, dtype=np.float32).reshape(self.channels, 1, 1)
        self.classes: list[str] = list(schema.classes)
        self.positive = self.classes.index(schema.positive_class)
        self.class_labels = self.classes
        self._labels = np.array(self.classes, dtype=object)
        self.threshold = settings.threshold if settings.threshold is not None else schema.threshold
        self.max_pixels = int(settings.max_pixels or schema.max_pixels)
        self.max_image_bytes = settings.max_image_bytes
        self.max_request_pixels = getattr(settings, "max_request_pixels", 64 * 1024 * 1024)
        self.max_rows = settings.max_rows_per_request
        self.send_pixels = getattr(settings, "predictor_input", "uint8") == "uint8"
        # PIL's own bomb guard as a second line; the header check below answers first, with a 400
        Image.MAX_IMAGE_PIXELS = self.max_pixels

    def input_types(self) -> list[dict]:
        return [{"name": self.input_name, "datatype": "BYTES", "shape": [-1]}]

    def output_types(self) -> list[dict]:
        return [{"name": "probability", "datatype": "FP32", "shape": [-1]},
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "heatmap", "datatype": "BYTES", "shape": [-1]},  # on request: Grad-CAM PNG
                {"name": "hot_region", "datatype": "FP32", "shape": [-1, 4]}]  # on request: x0, y0, x1, y1

    def files(self, inputs) -> list[bytes]:
        """The image files of the request (cheap; decoding happens in :meth:`encode_files`)."""
        names, expected = [t.name for t in inputs], self.input_name
        if expected not in names:
            raise BadRequest(Reason.MISSING_INPUT, f"missing input '{expected}' (BYTES [N] of JPEG/PNG files)")
        if len(names) > 1:
            if names.count(expected) > 1:
                raise BadRequest(Reason.DUPLICATE_INPUT, f"input '{expected}' appears more than once")
            extra = next(n for n in names if n != expected)
            raise BadRequest(Reason.UNKNOWN_INPUT, f"unexpected input '{extra}'; only '{expected}' is accepted")
        tensor = inputs[0]
        if tensor.datatype != "BYTES":
            raise BadRequest(Reason.DATATYPE, f"input '{expected}': datatype {tensor.datatype}; BYTES needed")
        shape = tensors.shape_of(tensor)
        if len(shape) != 1:
            raise BadRequest(Reason.SHAPE, f"input '{expected}': shape {shape} must be [N]")
        if shape[0] < 1 or shape[0] > self.max_rows:
            raise BadRequest(Reason.SHAPE, f"input '{expected}': {shape[0]} images; 1 to {self.max_rows} allowed")
        values = tensors.elements(tensor)
        files = []
        for i, value in enumerate(values):
            if value is None:
                raise BadRequest(Reason.MISSING_VALUE, f"input '{expected}' element {i}: null")
            data = tensors.as_bytes(tensor, i, value, base64_text=True)
            if not data:
                raise BadRequest(Reason.IMAGE, f"input '{expected}' element {i}: empty")
            if len(data) > self.max_image_bytes:
                raise BadRequest(Reason.IMAGE_TOO_LARGE, f"input '{expected}' element {i}: {len(data)} bytes exceeds "
                                                         f"{self.max_image_bytes}")
            files.append(data)
        return files

    def encode_files(self, files: list[bytes]) -> np.ndarray:
        """Decode and resize every file into ``[N, C, H, W]`` uint8 pixels (CPU-bound: run it in a thread).

        Every header is read first (Pillow's lazy open reads nothing else): the per-image limit and the
        request's decode budget are checked before a single pixel is decoded."""
        opened = [self._open(i, data) for i, data in enumerate(files)]
        total = sum(image.size[0] * image.size[1] for image in opened)
        if total > self.max_request_pixels:
            raise BadRequest(Reason.PIXEL_BUDGET, f"input '{self.input_name}': {len(files)} images hold {total} pixels "
                                                  f"together, over the request's decode budget of "
                                                  f"{self.max_request_pixels} (max_request_pixels)")
        return np.stack([self._decode(i, image) for i, image in enumerate(opened)])

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 ``[N, C, H, W]`` → float32 scaled to [0, 1] and normalised by the bundle's mean/std
        (the predictor does the same in torch for UINT8 input)."""
        x = pixels.astype(np.float32)
        x /= 255.0
        x -= self.mean
        x /= self.std
        return x

    def _open(self, i: int, data: bytes):
        """The image of ``data`` with its header read and checked; no pixel decoded yet."""
        from PIL import Image, UnidentifiedImageError

        where = f"input '{self.input_name}' element {i}"
        try:
            image = Image.open(io.BytesIO(data))  # reads the header only
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise BadRequest(Reason.UNDECODABLE_IMAGE, f"{where}: not a decodable JPEG or PNG image") from None
        except Image.DecompressionBombError as err:
            raise BadRequest(Reason.PIXEL_LIMIT, f"{where}: image over the pixel limit of {self.max_pixels} ({err})") from None
        if image.format not in FORMATS:
            raise BadRequest(Reason.IMAGE_FORMAT, f"{where}: {image.format} image; JPEG or PNG needed")
        width, height = image.size
        if width * height > self.max_pixels:
            raise BadRequest(Reason.PIXEL_LIMIT, f"{where}: image over the pixel limit of {self.max_pixels}: "
                                                 f"{width}x{height} = {width * height} pixels")
        return image

    def _decode(self, i: int, image) -> np.ndarray:
        from PIL import Image

        where = f"input '{self.input_name}' element {i}"
        try:
            image.load()
            image = image.convert(self.mode).resize((self.width, self.height), Image.BILINEAR)
        except Image.DecompressionBombError as err:
            raise BadRequest(Reason.PIXEL_LIMIT, f"{where}: image over the pixel limit of {self.max_pixels} ({err})") from None
        except (OSError, ValueError, SyntaxError, EOFError) as err:
            raise BadRequest(Reason.UNDECODABLE_IMAGE, f"{where}: truncated or corrupt {image.format} ({err})") from None
        pixels = np.asarray(image)
        return pixels[None, :, :] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)

    def decode(self, outputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Response tensors, and each row's index into :attr:`class_labels` (for metrics)."""
        logits = np.asarray(outputs[self.predictor_output], dtype=np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        proba = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        p = served_probability(proba[:, self.positive], self.calibration)
        index = np.where(p >= self.threshold, self.positive, 1 - self.positive)
        return {"probability": p.astype(np.float32), "label": self._labels[index]}, index

    def explain(self, rows: np.ndarray, outputs: dict[str, np.ndarray], served: dict, wanted: tuple[str, ...],
                text: bool) -> dict:
        """The requested ``heatmap`` / ``hot_region`` outputs from the predictor's Grad-CAM map
        (:mod:`.heatmap`); PNGs as base64 when ``text``."""
        made = heatmap.outputs(rows, np.asarray(outputs["cam"], dtype=np.float32), self.mean, self.std, text,
                               png="heatmap" in wanted)
        return {name: made[name] for name in wanted}
