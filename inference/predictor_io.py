"""Reading and writing V2 tensors in the predictors (the transformer's own checks are richer)."""

from __future__ import annotations

import numpy as np
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from inference.errors import RejectedInput
from inference.reasons import Reason
from inference.responses import JsonInferResponse

NUMERIC = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"}


def single_tensor(request: InferRequest, model: str, shape_tail: tuple[int, ...], max_rows: int,
                  dtype=np.float64) -> np.ndarray:
    """The request's one numeric input as an array of shape ``[N, *shape_tail]``."""
    if not isinstance(request, InferRequest):
        raise RejectedInput(model, Reason.PROTOCOL, "this predictor speaks the V2 protocol only (/v2/models/<name>/infer)")
    if len(request.inputs) != 1:
        names = ", ".join(repr(i.name) for i in request.inputs)
        raise RejectedInput(model, Reason.INPUTS, f"expected exactly one input, got {len(request.inputs)} ({names})")
    tensor = request.inputs[0]
    if tensor.datatype not in NUMERIC:
        raise RejectedInput(model, Reason.DATATYPE, f"input '{tensor.name}': datatype {tensor.datatype} is not numeric")
    expected = [-1, *shape_tail]
    shape = list(tensor.shape)
    if len(shape) != len(expected) or list(shape[1:]) != list(shape_tail):
        raise RejectedInput(model, Reason.SHAPE, f"input '{tensor.name}': shape {shape} does not match {expected}")
    if shape[0] < 1 or shape[0] > max_rows:
        raise RejectedInput(model, Reason.SHAPE, f"input '{tensor.name}': {shape[0]} rows; 1 to {max_rows} allowed")
    try:
        array = np.asarray(tensor.as_numpy(), dtype=dtype).reshape(shape)
    except (ValueError, TypeError) as err:
        raise RejectedInput(model, Reason.DATA, f"input '{tensor.name}': data does not fit shape {shape}: {err}") from None
    except OverflowError as err:  # a JSON value outside the datatype's range (-10 for UINT8)
        raise RejectedInput(model, Reason.OUT_OF_RANGE, f"input '{tensor.name}': a value is out of range for "
                                                        f"{tensor.datatype}: {err}") from None
    if np.isinf(array).any():
        raise RejectedInput(model, Reason.NON_FINITE, f"input '{tensor.name}': contains inf")
    return array


DATATYPES = {np.dtype("float32"): "FP32", np.dtype("float64"): "FP64", np.dtype("int32"): "INT32",
             np.dtype("int64"): "INT64", np.dtype(object): "BYTES"}


def response(request: InferRequest, model: str, outputs: dict[str, np.ndarray],
             model_version: str | None = None) -> InferResponse:
    """The V2 response of ``outputs``; a requested output the model does not have is a 400 (KServe would
    leave it out silently)."""
    unknown = [r.name for r in request.request_outputs or () if r.name not in outputs]
    if unknown:
        raise RejectedInput(model, Reason.UNKNOWN_OUTPUT, f"unknown output '{unknown[0]}' requested; outputs are "
                                                          f"{', '.join(sorted(outputs))}")
    infer_outputs = []
    for name, array in outputs.items():
        datatype = DATATYPES[array.dtype]
        out = InferOutput(name=name, shape=list(array.shape), datatype=datatype)
        out.set_data_from_numpy(np.ascontiguousarray(array), binary_data=request.use_binary_outputs)
        infer_outputs.append(out)
    return JsonInferResponse(response_id=request.id or "", model_name=model, model_version=model_version,
                             infer_outputs=infer_outputs,
                         use_binary_outputs=request.use_binary_outputs)
