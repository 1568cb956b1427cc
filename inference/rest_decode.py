"""Decoding V2 REST bodies that use the binary-data extension, without a Python list per element.

KServe 0.21's ``InferRequest.from_bytes`` turns every binary tensor into a Python list
(``set_data_from_numpy(as_numpy(), binary_data=False)``), one float object per element, on the
event loop. For the pneumonia predictor that is 32 x 3 x 224 x 224 = 4.8 M objects per batch, which
py-spy showed taking over half of the predictor's wall time, on the cores the forward pass needs.

:func:`from_bytes` keeps numeric binary tensors as their raw bytes (``InferInput._raw_data``, which
``as_numpy()`` reads with ``np.frombuffer``, exactly as KServe's gRPC decoder already does), and hands
any request with a binary ``BYTES`` tensor to KServe's own decoder (it keeps those as UTF-8 text).
The JSON part, the ids, parameters and requested outputs are read the same way as KServe reads them.
:mod:`inference.kserve_patches` puts it in the place of KServe's.
"""

from __future__ import annotations

import orjson
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

_KSERVE_FROM_BYTES = InferRequest.from_bytes.__func__


def from_bytes(cls, req_bytes: bytes, json_length: int, model_name: str) -> InferRequest:
    try:
        document = orjson.loads(req_bytes[:json_length])
    except orjson.JSONDecodeError as err:
        raise InvalidInput(f"Unrecognized request format: {err}") from None
    specs = document.get("inputs") if isinstance(document, dict) else None
    if not isinstance(specs, list) or any(
            not isinstance(s, dict) or (s.get("data") is None and s.get("datatype") == "BYTES") for s in specs):
        return _KSERVE_FROM_BYTES(cls, req_bytes, json_length, model_name)  # its messages and BYTES handling
    body = memoryview(req_bytes)
    inputs, start = [], json_length
    for spec in specs:
        parameters = spec.get("parameters", None)
        tensor = InferInput(name=spec["name"], shape=spec["shape"], datatype=spec["datatype"], parameters=parameters)
        data = spec.get("data", None)
        if data is not None:
            if tensor.datatype == "FP16":
                raise InvalidInput(f"Receiving FP16 data via JSON is not supported. Please use the binary data "
                                   f"format for input {tensor.name}")
            tensor.data = data
        elif parameters and parameters.get("binary_data_size") is not None:
            end = start + parameters["binary_data_size"]
            tensor._raw_data = bytes(body[start:end])
            start = end
        elif parameters and "binary_data_size" in parameters:
            raise InvalidInput(f"'binary_data_size' is not specified for input '{tensor.name}' for model "
                               f"'{model_name}'")
        else:
            raise InvalidInput(f"'data' field is missing for input '{tensor.name}' for model '{model_name}'")
        inputs.append(tensor)
    outputs = document.get("outputs", None)
    requested = None if outputs is None else [
        RequestedOutput(name=o["name"], parameters=o.get("parameters", None)) for o in outputs]
    return cls(model_name=model_name, request_id=document.get("id", None),
               parameters=document.get("parameters", None), infer_inputs=inputs, request_outputs=requested)
