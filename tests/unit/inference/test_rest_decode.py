import struct

import numpy as np
import orjson
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

from inference import rest_decode

pytestmark = pytest.mark.unit


def body_of(document: dict, *chunks: bytes) -> tuple[bytes, int]:
    header = orjson.dumps(document)
    return header + b"".join(chunks), len(header)


def kserve_decode(body: bytes, length: int) -> InferRequest:
    return rest_decode._KSERVE_FROM_BYTES(InferRequest, body, length, "m")


def ours(body: bytes, length: int) -> InferRequest:
    return rest_decode.from_bytes(InferRequest, body, length, "m")


def test_numeric_binary_tensors_stay_raw_bytes_and_read_as_kserve_reads_them():
    images = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) / 7
    codes = np.array([[1, -2], [3, 4]], dtype=np.int64)
    body, length = body_of(
        {"id": "r1", "parameters": {"binary_data_output": True}, "outputs": [{"name": "logits"}],
         "inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 3, 4],
                     "parameters": {"binary_data_size": images.nbytes}},
                    {"name": "codes", "datatype": "INT64", "shape": [2, 2], "parameters": {"binary_data_size": 32}},
                    {"name": "age", "datatype": "FP64", "shape": [2], "data": [63.0, 41.5]}]},
        images.tobytes(), codes.tobytes())
    request, reference = ours(body, length), kserve_decode(body, length)
    assert request.inputs[0]._raw_data == images.tobytes()
    assert request.inputs[0].data is None  # no Python object per element
    for mine, theirs in zip(request.inputs, reference.inputs, strict=True):
        assert (mine.name, mine.datatype, list(mine.shape)) == (theirs.name, theirs.datatype, list(theirs.shape))
        np.testing.assert_array_equal(mine.as_numpy(), theirs.as_numpy())
    np.testing.assert_array_equal(request.inputs[0].as_numpy(), images)
    assert request.inputs[0].as_numpy().dtype == np.float32
    assert request.inputs[2].data == [63.0, 41.5]
    assert (request.id, request.model_name, request.use_binary_outputs) == ("r1", "m", True)
    assert [o.name for o in request.request_outputs] == ["logits"]
    assert not request.from_grpc


def test_binary_bytes_tensors_go_to_kserve_decoder():
    text = struct.pack("<I", 5) + b"hello"
    body, length = body_of({"inputs": [{"name": "s", "datatype": "BYTES", "shape": [1],
                                        "parameters": {"binary_data_size": len(text)}}]}, text)
    request = ours(body, length)
    assert request.inputs[0].data == ["hello"]  # KServe's UTF-8 text form


@pytest.mark.parametrize(("document", "message"), [
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}, "'data' field is missing for input 'x'"),
    ({"inputs": [{"name": "x", "datatype": "FP16", "shape": [1], "data": [1.0]}]},
     "Receiving FP16 data via JSON is not supported"),
])
def test_errors_name_the_input_as_kserve_does(document, message):
    body, length = body_of(document)
    with pytest.raises(InvalidInput, match=message):
        ours(body, length)
    with pytest.raises(InvalidInput, match=message):
        kserve_decode(body, length)


def test_bad_json_is_invalid_input():
    with pytest.raises(InvalidInput, match="Unrecognized request format"):
        ours(b"{nope", 5)

