import numpy as np
import pytest
from fastapi.encoders import jsonable_encoder
from fastapi.responses import ORJSONResponse
from kserve.errors import InferenceError
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest
from kserve.protocol.rest.v2_datamodels import InferenceResponse

from inference.responses import JsonInferResponse, json_data

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore:ORJSONResponse is deprecated")]


def fastapi_body(response: JsonInferResponse) -> bytes:
    """What KServe's REST endpoint + FastAPI write for a dict from ``to_rest``, less its ``null`` fields
    (the Open Inference Protocol's schema allows no null model_version or parameters)."""
    document, _ = super(JsonInferResponse, response).to_rest()
    document = jsonable_encoder(InferenceResponse.model_validate(document))
    document = {k: v for k, v in document.items() if v is not None}
    document["outputs"] = [{k: v for k, v in out.items() if v is not None} for out in document["outputs"]]
    return ORJSONResponse(document).body


def outputs(binary: bool = False) -> list[InferOutput]:
    arrays = {"probability": np.array([0.25, np.float32(0.9952256), np.nan], dtype=np.float32),
              "prediction": np.array([0, 1, 1], dtype=np.int32),
              "risk_level": np.array(["Low", "High", "High"], dtype=object),
              "proba": np.array([[0.004774344127905894, 0.9952256558720941]] * 3)}
    result = []
    for name, array in arrays.items():
        datatype = {"float32": "FP32", "int32": "INT32", "object": "BYTES", "float64": "FP64"}[array.dtype.name]
        out = InferOutput(name=name, shape=list(array.shape), datatype=datatype)
        out.set_data_from_numpy(array, binary_data=binary)
        result.append(out)
    return result


@pytest.mark.parametrize("response_id", ["", "req-7"])
def test_json_body_is_byte_for_byte_what_fastapi_writes(response_id):
    response = JsonInferResponse(response_id=response_id, model_name="heart-disease", infer_outputs=outputs())
    body, json_length = response.to_rest()
    assert json_length is None
    assert body == fastapi_body(response)
    assert body.startswith(b'{"model_name":"heart-disease","id":"' + response_id.encode())
    assert b"null" not in body.replace(b'"data":[0.25,0.9952256083488464,null]', b"")


def test_the_model_version_is_reported():
    response = JsonInferResponse(response_id="r", model_name="m", model_version="7", infer_outputs=outputs())
    assert response.to_rest()[0].startswith(b'{"model_name":"m","model_version":"7","id":"r","outputs":[')


def test_requested_outputs_keep_kserve_selection():
    tensor = InferInput("x", [1], "FP32")
    tensor.set_data_from_numpy(np.zeros(1, dtype=np.float32), binary_data=False)
    request = InferRequest(model_name="m", infer_inputs=[tensor], request_outputs=None)
    response = JsonInferResponse(response_id="", model_name="m", infer_outputs=outputs(),
                                 requested_outputs=request.request_outputs)
    assert response.to_rest()[0] == fastapi_body(response)


def test_binary_outputs_stay_kserves_own_encoding():
    response = JsonInferResponse(response_id="", model_name="m", infer_outputs=outputs(binary=True),
                                 use_binary_outputs=True)
    body, json_length = response.to_rest()
    assert isinstance(body, bytes) and json_length is not None and json_length < len(body)


@pytest.mark.parametrize("array", [
    np.array([0.8100000023841858, 0.2], np.float32), np.array([[1, 2], [3, 4]], np.int32),
    np.array(["disease", b"no disease", "é"], dtype=object), np.array([], np.float32), np.array(np.float32(0.3)),
    np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)), np.array([[0.1], [0.7]], np.float32).T,
], ids=["fp32", "int32-2d", "bytes-objects", "empty", "scalar", "fortran-order", "transposed"])
def test_json_data_is_what_kserve_stores_for_a_json_output(array):
    datatype = "BYTES" if array.dtype == object else {"float32": "FP32", "int32": "INT32"}[array.dtype.name]
    kserves = InferOutput("x", list(array.shape), datatype)
    kserves.set_data_from_numpy(array, binary_data=False)
    ours = json_data(array)
    assert ours == kserves.data and [type(v) for v in ours] == [type(v) for v in kserves.data]


def test_json_data_refuses_bytes_that_are_not_utf8_as_kserve_does():
    with pytest.raises(InferenceError, match="Failed to encode b'\\\\xff' using UTF-8"):
        json_data(np.array([b"\xff"], dtype=object))
