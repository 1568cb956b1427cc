import base64
import struct

import orjson
import pytest

from inference.envelope import BASE64_PARAMETER, BadRequest, rewrite_binary

pytestmark = pytest.mark.unit


def binary_body(inputs, chunks):
    header = orjson.dumps({"inputs": inputs})
    return header + b"".join(chunks), len(header)


def bytes_tensor(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def test_non_utf8_bytes_become_base64_text_and_numeric_binary_stays():
    png = b"\x89PNG\r\n\x1a\n...."
    numbers = struct.pack("<2d", 1.5, 2.5)
    body, length = binary_body(
        [{"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(bytes_tensor(png))}},
         {"name": "x", "datatype": "FP64", "shape": [2], "parameters": {"binary_data_size": 16}}],
        [bytes_tensor(png), numbers])
    new_body, new_length = rewrite_binary(body, length)
    document = orjson.loads(new_body[:new_length])
    assert document["inputs"][0]["data"] == [base64.b64encode(png).decode()]
    assert document["inputs"][0]["parameters"] == {BASE64_PARAMETER: True}
    assert new_body[new_length:] == numbers


@pytest.mark.parametrize(("inputs", "chunks", "length_delta", "fragment"), [
    ([{"name": "x", "datatype": "FP64", "shape": [2], "parameters": {"binary_data_size": 8}}],
     [b"\0" * 8], 0, "8 bytes do not hold shape [2] of FP64"),
    ([{"name": "x", "datatype": "FP64", "shape": [1], "parameters": {"binary_data_size": 16}}],
     [b"\0" * 8], 0, "runs past the end"),
    ([{"name": "s", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}}],
     [struct.pack("<I", 50) + b"ab"], 0, "truncated BYTES tensor"),
    ([{"name": "x", "datatype": "FP64", "shape": [1], "parameters": {"binary_data_size": 8}}],
     [b"\0" * 12], 0, "4 bytes after the last binary input"),
    ([{"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}], [], 0, "unknown datatype 'FP99'"),
    ([{"name": "x", "datatype": "FP64", "shape": [-1], "data": [1]}], [], 0, "non-negative integers"),
    ([{"name": "x", "datatype": "FP64", "shape": [1]}], [], 0, "input 'x': no 'data'"),
    ([], [], 0, "no 'inputs'"),
    ([{"name": "x", "datatype": "FP64", "shape": [1], "data": [1]}], [], 10_000, "exceeds the body"),
])
def test_malformed_binary_bodies(inputs, chunks, length_delta, fragment):
    body, length = binary_body(inputs, chunks)
    with pytest.raises(BadRequest) as err:
        rewrite_binary(body, length + length_delta)
    assert fragment in err.value.message
