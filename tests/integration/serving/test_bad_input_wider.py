"""The wider bad-input catalogue: each request is refused with 400 / INVALID_ARGUMENT naming its cause,
and counted in ``clinops_rejected_inputs_total`` under that reason, by transformers and predictors alike.
Images that are cheap to send but dear to decode are stopped from their headers: per image by the pixel
limit, per request by the decode budget (``--max_request_pixels``)."""

import base64
import io
import json
import struct

import grpc
import numpy as np
import pytest
from images import encode, random_image
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from PIL import Image
from support.v2_calls import grpc_infer, metric_total, post, rejections

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROW = {"age": 63, "sex": "male", "cp": "asymptomatic", "trestbps": 145, "chol": 233, "fbs": 1, "restecg": 2,
       "thalach": 150, "exang": 0, "oldpeak": 2.3, "slope": 3, "ca": 0, "thal": "fixed defect"}
CODES = [63, 1, 4, 145, 233, 1, 2, 150, 0, 2.3, 3, 0, 6]
PER_IMAGE_LIMIT = 4096 * 4096  # the sample pneumonia bundle's max_pixels
REQUEST_BUDGET = 64 * 1024 * 1024  # the transformer's default max_request_pixels


def heart_inputs(**overrides) -> list[dict]:
    row = {**ROW, **overrides}
    return [{"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "FP64", "data": [v]}
            for k, v in row.items()]


def images_body(*files) -> dict:
    data = [None if f is None else base64.b64encode(f).decode() for f in files]
    return {"inputs": [{"name": "image", "shape": [len(files)], "datatype": "BYTES", "data": data}]}


def zeros_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, "PNG", optimize=False)
    return buffer.getvalue()


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF header is rewritten to claim ``width`` x ``height``."""
    data = bytearray(encode(random_image(16, 16), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


class Rejections:
    """The change of one runtime's rejection counter across a block."""

    def __init__(self, rest_url: str):
        self.url = rest_url
        self.before = rejections(rest_url)

    def delta(self, model: str, reason: str) -> float:
        return rejections(self.url).get((model, reason), 0.0) - self.before.get((model, reason), 0.0)


def assert_rejected(url_rest: str, infer_url: str, body, fragment: str, model: str, reason: str, headers=None):
    counter = Rejections(url_rest)
    status, answer = post(infer_url, body, headers)
    assert status == 400, answer
    assert fragment in answer["error"], answer
    assert counter.delta(model, reason) == 1


# -- images -------------------------------------------------------------------------------------------

def test_a_tiny_file_decoding_to_near_the_pixel_limit_is_served_alone(stack):
    file = zeros_png(4096, 4000)  # 16.4 M pixels of zeros: a few kilobytes
    assert len(file) < 64 * 1024 and 4096 * 4000 <= PER_IMAGE_LIMIT
    status, answer = post(stack.endpoints["pneumonia"].infer_url, images_body(file))
    assert status == 200, answer
    assert [o["shape"] for o in answer["outputs"]] == [[1], [1]]


def test_many_tiny_files_over_the_decode_budget_are_refused_from_their_headers(stack):
    endpoint = stack.endpoints["pneumonia"]
    files = [zeros_png(4096, 4000)] * 5  # 82 M pixels together, each under the per-image limit
    assert 5 * 4096 * 4000 > REQUEST_BUDGET
    assert_rejected(endpoint.rest_url, endpoint.infer_url, images_body(*files),
                    f"5 images hold {5 * 4096 * 4000} pixels together, over the request's decode budget of "
                    f"{REQUEST_BUDGET} (max_request_pixels)", "pneumonia", "pixel_budget")


def test_a_jpeg_whose_header_claims_huge_dimensions(stack):
    endpoint = stack.endpoints["pneumonia"]
    assert_rejected(endpoint.rest_url, endpoint.infer_url, images_body(jpeg_claiming(60_000, 60_000)),
                    "input 'image' element 0: image over the pixel limit", "pneumonia", "pixel_limit")


def test_a_null_image_element(stack):
    endpoint = stack.endpoints["pneumonia"]
    assert_rejected(endpoint.rest_url, endpoint.infer_url, images_body(encode(random_image(20, 20)), None),
                    "input 'image' element 1: null", "pneumonia", "missing_value")


# -- heart-disease, REST --------------------------------------------------------------------------------

def binary_body(inputs: list[tuple[dict, bytes]]) -> tuple[bytes, dict]:
    header = json.dumps({"inputs": [dict(spec, parameters={"binary_data_size": len(raw)})
                                    for spec, raw in inputs]}).encode()
    return header + b"".join(raw for _, raw in inputs), {"Inference-Header-Content-Length": str(len(header)),
                                                         "content-type": "application/octet-stream"}


def test_non_utf8_text_in_a_categorical_feature(stack):
    endpoint = stack.endpoints["heart-disease"]
    text = b"\xffmale"
    raw = [({"name": "features", "shape": [1, 13], "datatype": "FP64"}, struct.pack("<13d", *CODES))]
    body, headers = binary_body(raw)
    assert post(endpoint.infer_url, body, headers)[0] == 200  # the same framing, valid
    specs = [(spec, raw) for spec, raw in
             [({"name": k, "shape": [1], "datatype": "FP64"}, struct.pack("<d", v)) for k, v in
              zip(list(ROW), CODES, strict=True) if k != "sex"]]
    specs.insert(1, ({"name": "sex", "shape": [1], "datatype": "BYTES"}, struct.pack("<I", len(text)) + text))
    body, headers = binary_body(specs)
    assert_rejected(endpoint.rest_url, endpoint.infer_url, body, "input 'sex' element 0: not UTF-8 text",
                    "heart-disease", "encoding", headers)
    as_json = json.dumps({"inputs": heart_inputs(sex="MALE")}).encode().replace(b"MALE", b"\xffmale")
    assert_rejected(endpoint.rest_url, endpoint.infer_url, as_json, "the request body is not valid JSON",
                    "heart-disease", "json")


def test_an_unknown_requested_output(stack):
    endpoint = stack.endpoints["heart-disease"]
    body = {"inputs": heart_inputs(), "outputs": [{"name": "probability"}, {"name": "survival"}]}
    calls = metric_total(endpoint.rest_url, "clinops_predictor_calls", model="heart-disease")
    assert_rejected(endpoint.rest_url, endpoint.infer_url, body, "unknown output 'survival' requested",
                    "heart-disease", "unknown_output")
    assert metric_total(endpoint.rest_url, "clinops_predictor_calls", model="heart-disease") == calls  # not called
    status, answer = post(endpoint.infer_url, {"inputs": heart_inputs(), "outputs": [{"name": "risk_level"}]})
    assert status == 200 and [o["name"] for o in answer["outputs"]] == ["risk_level"]
    assert metric_total(endpoint.rest_url, "clinops_predictor_calls", model="heart-disease") == calls + 1
    predictor = {"inputs": [{"name": "features", "shape": [1, 13], "datatype": "FP64", "data": CODES}],
                 "outputs": [{"name": "survival"}]}
    assert_rejected(endpoint.predictor_rest_url, f"{endpoint.predictor_rest_url}/v2/models/heart-disease/infer",
                    predictor, "unknown output 'survival' requested", "heart-disease", "unknown_output")


@pytest.mark.parametrize("depth", [50, 900])
def test_deeply_nested_data(stack, depth):
    endpoint = stack.endpoints["heart-disease"]
    nested = CODES
    for _ in range(depth):
        nested = [nested]
    spec = {"name": "features", "shape": [1, 13], "datatype": "FP64", "data": nested}
    for url_rest, infer_url in [(endpoint.rest_url, endpoint.infer_url),
                                (endpoint.predictor_rest_url,
                                 f"{endpoint.predictor_rest_url}/v2/models/heart-disease/infer")]:
        assert_rejected(url_rest, infer_url, {"inputs": [spec]},
                        "input 'features': data nested deeper than shape [1, 13] allows (2 levels at most)", "heart-disease", "nesting")


def test_a_binary_header_length_shorter_than_the_json(stack):
    endpoint = stack.endpoints["heart-disease"]
    body, headers = binary_body([({"name": "features", "shape": [1, 13], "datatype": "FP64"},
                                  struct.pack("<13d", *CODES))])
    short = int(headers["Inference-Header-Content-Length"]) - 7
    assert_rejected(endpoint.rest_url, endpoint.infer_url, body,
                    "the JSON part of the request is not valid JSON", "heart-disease", "json",
                    {**headers, "Inference-Header-Content-Length": str(short)})


# -- gRPC ---------------------------------------------------------------------------------------------

def tensor(name, datatype, shape, **contents):
    return pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape,
                                                 contents=pb.InferTensorContents(**contents) if contents else None)


def heart_grpc(target_model: str, inputs, raw=()) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name=target_model, inputs=inputs, raw_input_contents=list(raw))


FEATURES = np.asarray(CODES, dtype=np.float64).tobytes()
GRPC_CASES = [
    ("raw count over inputs", [tensor("features", "FP64", [1, 13])], [FEATURES, FEATURES],
     "2 raw_input_contents for 1 inputs", "binary"),
    ("raw count under inputs", [tensor("features", "FP64", [1, 13]), tensor("age", "FP64", [1])], [FEATURES],
     "1 raw_input_contents for 2 inputs", "binary"),
    ("raw length", [tensor("features", "FP64", [1, 13])], [FEATURES[:-8]],
     "input 'features': 96 bytes do not hold shape [1, 13] of FP64 (104 bytes)", "shape"),
    ("negative shape", [tensor("features", "FP64", [-1, 13], fp64_contents=CODES)], [],
     "input 'features': shape [-1, 13] has a negative dimension", "shape"),
    ("huge shape", [tensor("features", "FP64", [2 ** 40, 13], fp64_contents=CODES)], [],
     "input 'features': shape [1099511627776, 13] holds 14293651161088 elements; 13 were sent", "shape"),
    ("unknown datatype", [tensor("features", "FP99", [1, 13], fp64_contents=CODES)], [],
     "input 'features': unknown datatype 'FP99'", "datatype"),
    ("contents of another datatype", [tensor("features", "FP64", [1, 13], int64_contents=[1] * 13)], [],
     "input 'features': FP64 data must be in fp64_contents, not int64_contents", "datatype"),
]


@pytest.mark.parametrize(("case", "inputs", "raw", "fragment", "reason"), GRPC_CASES, ids=[c[0] for c in GRPC_CASES])
@pytest.mark.parametrize("runtime", ["transformer", "predictor"])
def test_grpc_malformed_tensors(stack, runtime, case, inputs, raw, fragment, reason):
    endpoint = stack.endpoints["heart-disease"]
    target, rest = ((endpoint.grpc_target, endpoint.rest_url) if runtime == "transformer"
                    else (endpoint.predictor_grpc_target, endpoint.predictor_rest_url))
    counter = Rejections(rest)
    code, details = grpc_infer(target, heart_grpc("heart-disease", inputs, raw))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (case, code, details)
    assert fragment in details, details
    assert counter.delta("heart-disease", reason) == 1


def test_grpc_wrong_datatype_per_input(stack):
    endpoint = stack.endpoints["heart-disease"]
    inputs = [tensor(k, "FP64", [1], fp64_contents=[v]) for k, v in zip(list(ROW), CODES, strict=True)]
    code, response = grpc_infer(endpoint.grpc_target, heart_grpc("heart-disease", inputs))
    assert code == grpc.StatusCode.OK, response
    inputs[0] = tensor("age", "BYTES", [1], bytes_contents=[b"63"])
    counter = Rejections(endpoint.rest_url)
    code, details = grpc_infer(endpoint.grpc_target, heart_grpc("heart-disease", inputs))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "input 'age': numeric feature needs a numeric datatype" in details
    assert counter.delta("heart-disease", "datatype") == 1
    inputs[0] = tensor("age", "FP64", [1], fp64_contents=[63])
    inputs[1] = tensor("sex", "BYTES", [1], bytes_contents=[b"\xffmale"])
    code, details = grpc_infer(endpoint.grpc_target, heart_grpc("heart-disease", inputs))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "input 'sex' element 0: not UTF-8 text" in details
    image = tensor("image", "FP32", [1], fp32_contents=[1.0])
    code, details = grpc_infer(stack.endpoints["pneumonia"].grpc_target, heart_grpc("pneumonia", [image]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "input 'image': datatype FP32; BYTES needed" in details
    pixels = tensor("input", "BYTES", [1, 1, 32, 28], bytes_contents=[b"x"] * (32 * 28))
    code, details = grpc_infer(stack.endpoints["pneumonia"].predictor_grpc_target, heart_grpc("pneumonia", [pixels]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "datatype BYTES is not numeric" in details
