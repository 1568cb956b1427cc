"""Checks on a gRPC ``ModelInferRequest`` before KServe reads it.

KServe takes the protobuf's fields as they come: ``raw_input_contents`` are matched to inputs by
position, shapes may be negative or claim far more elements than were sent, a datatype may be unknown
or its values sent in another datatype's contents field. Some of that ends as a bare message, some as
an empty tensor found much later. :func:`check` refuses each with a 400 / INVALID_ARGUMENT that names
the input and the problem, counted by reason like every other rejection.
:mod:`inference.kserve_patches` runs it in front of KServe's own request validation.
"""

from __future__ import annotations

import math

from inference.errors import RejectedInput
from inference.reasons import Reason

ITEM_SIZES = {"BOOL": 1, "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8, "INT8": 1, "INT16": 2, "INT32": 4,
              "INT64": 8, "FP16": 2, "FP32": 4, "FP64": 8, "BYTES": None}
CONTENTS = {"BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
            "UINT64": "uint64_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
            "INT64": "int64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}
FIELDS = sorted(set(CONTENTS.values()))

served: frozenset[str] = frozenset()  # metric labels only for served names: a fuzzer must not grow the registry


def _reject(request, reason: Reason, message: str) -> RejectedInput:
    model = request.model_name if request.model_name in served else "unknown"
    return RejectedInput(model, reason, message)


def check(request) -> None:
    """Raise :class:`RejectedInput` for the first malformed input of ``request`` (a ModelInferRequest)."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise _reject(request, Reason.BINARY, f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs: "
                                              f"one per input, in the order of the inputs, is required")
    for position, tensor in enumerate(request.inputs):
        name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
        if datatype not in ITEM_SIZES:
            raise _reject(request, Reason.DATATYPE, f"input '{name}': unknown datatype '{datatype}'")
        if any(d < 0 for d in shape):
            raise _reject(request, Reason.SHAPE, f"input '{name}': shape {shape} has a negative dimension")
        count = math.prod(shape)
        if raw:
            if tensor.HasField("contents"):
                raise _reject(request, Reason.BINARY, f"input '{name}': contents and raw_input_contents together; "
                                                      f"send one of them")
            size = ITEM_SIZES[datatype]
            if size is not None and len(raw[position]) != count * size:
                raise _reject(request, Reason.SHAPE, f"input '{name}': {len(raw[position])} bytes do not hold shape "
                                                     f"{shape} of {datatype} ({count * size} bytes)")
            continue
        if datatype == "FP16":
            raise _reject(request, Reason.DATATYPE, f"input '{name}': FP16 data must be sent in raw_input_contents")
        own = CONTENTS[datatype]
        other = next((f for f in FIELDS if f != own and len(getattr(tensor.contents, f))), None)
        if other is not None:
            raise _reject(request, Reason.DATATYPE, f"input '{name}': {datatype} data must be in {own}, not {other}")
        sent = len(getattr(tensor.contents, own))
        if sent != count:
            raise _reject(request, Reason.SHAPE, f"input '{name}': shape {shape} holds {count} elements; "
                                                 f"{sent} were sent")


def validate_grpc_request(cls, request) -> None:
    """``InferenceServicer.validate_grpc_request`` behind :func:`check`."""
    check(request)
    _KSERVE_VALIDATE(request)


def _kserve_validate():
    from kserve.protocol.grpc.servicer import InferenceServicer

    return InferenceServicer.validate_grpc_request


_KSERVE_VALIDATE = _kserve_validate()
