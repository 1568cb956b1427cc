"""Why a request was rejected: the closed set of values of the ``reason`` label of
``clinops_rejected_inputs_total``. A rejection names one of these, never a free string, so a fuzzer
cannot grow the metric's label set and dashboards can list every reason."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # the request envelope (body, JSON, V2 binary-data extension)
    BODY = "body"  # the client went away before the body was read
    BODY_TOO_LARGE = "body_too_large"
    JSON = "json"
    BINARY = "binary"
    PROTOCOL = "protocol"  # not a V2 inference request
    # the inputs of a request
    INPUTS = "inputs"  # a predictor takes exactly one input
    MISSING_INPUT = "missing_input"
    UNKNOWN_INPUT = "unknown_input"
    EXTRA_INPUT = "extra_input"
    DUPLICATE_INPUT = "duplicate_input"
    UNKNOWN_OUTPUT = "unknown_output"
    MISSING_DATA = "missing_data"
    DATATYPE = "datatype"
    SHAPE = "shape"
    DATA = "data"  # the data do not fit the declared shape
    NESTING = "nesting"  # data nested deeper than its shape
    BASE64 = "base64"
    ENCODING = "encoding"  # BYTES text that is not UTF-8
    # the values
    MISSING_VALUE = "missing_value"
    NON_FINITE = "non_finite"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN_CATEGORY = "unknown_category"
    # image files
    IMAGE = "image"  # an empty element
    IMAGE_TOO_LARGE = "image_too_large"
    IMAGE_FORMAT = "image_format"
    UNDECODABLE_IMAGE = "undecodable_image"
    PIXEL_LIMIT = "pixel_limit"
    PIXEL_BUDGET = "pixel_budget"  # the images of one request hold too many pixels together


def checked(reason: Reason) -> Reason:
    """``reason`` itself; a plain string is a TypeError (the label set stays the enum's)."""
    if not isinstance(reason, Reason):
        raise TypeError(f"a rejection reason must be a Reason, not {type(reason).__name__} {reason!r}")
    return reason
