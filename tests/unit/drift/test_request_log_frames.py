"""The frames a transformer hands its request-log agent: what goes in comes out, value for value."""

import numpy as np
import pytest

from inference.request_log_frames import PREFIX, decode, encode

pytestmark = pytest.mark.unit


def frame_parts(inputs, outputs):
    buffers, length, size = encode(inputs, outputs)
    joined = b"".join(bytes(b) for b in buffers)
    assert len(joined) == length
    header_len, data_len = PREFIX.unpack_from(joined)
    header = joined[PREFIX.size:PREFIX.size + header_len]
    assert len(joined) == PREFIX.size + header_len + data_len and data_len == size
    return header, joined[PREFIX.size + header_len:]


def test_arrays_of_every_kind_come_back_with_their_names_dtypes_shapes_and_values():
    inputs = {"features": np.array([[63.0, np.nan], [41.0, np.inf]]), "ids": np.arange(6, dtype=np.int32).reshape(3, 2)}
    outputs = {"p": np.array([[0.25, 0.75]], dtype=np.float32), "flag": np.array([True, False]),
               "empty": np.zeros((0, 4))}
    got_in, got_out = decode(*frame_parts(inputs, outputs))
    assert list(got_in) == ["features", "ids"] and list(got_out) == ["p", "flag", "empty"]
    for sent, got in ((inputs, got_in), (outputs, got_out)):
        for name, array in sent.items():
            assert got[name].dtype == array.dtype and got[name].shape == array.shape
            np.testing.assert_array_equal(got[name], array)  # NaN where NaN was


def test_a_sliced_array_is_sent_as_its_values_not_its_memory():
    rows = np.arange(20.0).reshape(4, 5)[:, 1:3]  # not contiguous
    got_in, _ = decode(*frame_parts({"x": rows}, {}))
    np.testing.assert_array_equal(got_in["x"], rows)


def test_a_frame_whose_data_does_not_match_its_header_is_refused():
    header, data = frame_parts({"x": np.ones((2, 2))}, {})
    with pytest.raises(ValueError, match="data bytes"):
        decode(header, data + b"\0" * 8)


def test_an_array_of_objects_is_refused_on_both_sides():
    with pytest.raises(TypeError, match="x is object, not numbers"):
        encode({"x": np.array([["a"]], dtype=object)}, {})
    with pytest.raises(ValueError, match="x is <U1, not numbers"):
        decode(b'[[["x", "<U1", [1]]], []]', b"a\0\0\0")
