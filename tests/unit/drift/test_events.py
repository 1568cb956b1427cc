"""What the KServe request logger sends, read into arrays: both CloudEvent content modes, V2 and V1 bodies,
and a reason for every event the sidecar cannot use."""

import json
import math

import numpy as np
import pytest

from inference.drift import events
from inference.drift.events import REQUEST_TYPE, RESPONSE_TYPE, BadEvent

pytestmark = pytest.mark.unit


def agent_headers(event_id="5b3c-req-1", ce_type=REQUEST_TYPE, **extra):
    """Binary mode, header for header what the KServe agent's logger sends."""
    return {"Ce-Specversion": "1.0", "Ce-Id": event_id, "Ce-Type": ce_type,
            "Ce-Source": "http://localhost:9081/", "Ce-Time": "2026-11-20T10:00:00Z",
            "Content-Type": "application/json", "Ce-Inferenceservicename": "heart-disease",
            "Ce-Namespace": "clinical", "Ce-Component": "predictor", "Ce-Endpoint": "default", **extra}


def structured(data, **attributes) -> tuple[dict, bytes]:
    envelope = {"specversion": "1.0", "id": "s-1", "type": RESPONSE_TYPE, "source": "/agent",
                "datacontenttype": "application/json", "data": data, **attributes}
    return {"content-type": "application/cloudevents+json"}, json.dumps(envelope).encode()


V2_REQUEST = {"id": "r1", "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64",
                                       "data": [63.0, None, 145.0, 41.0, 1.0, float("nan")]}]}


def test_binary_event_as_the_kserve_agent_sends_it_reads_id_type_body_and_extensions():
    event = events.parse(agent_headers(), json.dumps(V2_REQUEST).encode())
    assert (event.id, event.kind) == ("5b3c-req-1", "request")
    assert event.extensions == {"inferenceservicename": "heart-disease", "namespace": "clinical",
                                "component": "predictor", "endpoint": "default"}
    assert event.body["inputs"][0]["name"] == "x"
    response = events.parse(agent_headers(ce_type=RESPONSE_TYPE), b'{"outputs": []}')
    assert (response.id, response.kind) == ("5b3c-req-1", "response")


def test_structured_event_reads_the_envelope_and_its_extensions():
    headers, body = structured({"outputs": [{"name": "p", "shape": [1, 2], "datatype": "FP64", "data": [0.2, 0.8]}]},
                               namespace="clinical", component="predictor")
    event = events.parse(headers, body)
    assert (event.id, event.kind) == ("s-1", "response")
    assert event.extensions == {"namespace": "clinical", "component": "predictor"}
    assert events.tensor(event.body, "response", "p").tolist() == [[0.2, 0.8]]


def test_v2_request_named_input_with_null_and_nan_as_missing():
    other = {"name": "meta", "shape": [1], "datatype": "INT64", "data": [7]}
    body = {"inputs": [other, *V2_REQUEST["inputs"]]}
    rows = events.tensor(body, "request", "x")
    assert rows.shape == (2, 3)
    assert rows[0, 0] == 63.0 and math.isnan(rows[0, 1]) and math.isnan(rows[1, 2])
    assert np.isnan(rows).sum() == 2
    # a bare NaN, as Python's json writes it, parsed from the wire
    event = events.parse(agent_headers(), b'{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", '
                                          b'"data": [NaN, 2.5]}]}')
    assert np.isnan(events.tensor(event.body, "request", "x")[0, 0])


def test_v2_nested_data_and_one_dimensional_shapes():
    nested = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, None]]}]}
    assert np.array_equal(events.tensor(nested, "request", None), [[1, 2], [3, np.nan]], equal_nan=True)
    flat = {"outputs": [{"name": "p", "shape": [3], "datatype": "FP64", "data": [0.1, 0.2, 0.3]}]}
    assert events.tensor(flat, "response", None).tolist() == [[0.1], [0.2], [0.3]]


def test_v2_response_picks_the_named_output():
    body = {"outputs": [{"name": "label", "shape": [2, 1], "datatype": "INT64", "data": [1, 0]},
                        {"name": "predict_proba", "shape": [2, 2], "datatype": "FP64", "data": [0.1, 0.9, 0.7, 0.3]}]}
    assert events.tensor(body, "response", "predict_proba").tolist() == [[0.1, 0.9], [0.7, 0.3]]
    assert events.tensor(body, "response", "label").tolist() == [[1.0], [0.0]]


def test_v1_instances_and_predictions():
    assert np.array_equal(events.tensor({"instances": [[1, 2], [3, None]]}, "request", None),
                          [[1, 2], [3, np.nan]], equal_nan=True)
    assert events.tensor({"predictions": [0.25, 0.75]}, "response", "ignored").tolist() == [[0.25], [0.75]]


@pytest.mark.parametrize("headers, body, reason", [
    ({"content-type": "application/json"}, b'{"inputs": []}', "not_a_cloudevent"),  # no ce-* headers at all
    ({"content-type": "application/cloudevents+json"}, b"{not json", "not_a_cloudevent"),
    ({"content-type": "application/cloudevents+json"}, b"[1, 2]", "not_a_cloudevent"),
    (agent_headers(**{"Ce-Specversion": "9.9"}), b"{}", "not_a_cloudevent"),
    (agent_headers(ce_type="org.kubeflow.serving.inference.other"), b"{}", "event_type"),
    (agent_headers(event_id=""), b"{}", "event_id"),
    (agent_headers(event_id="x" * (events.MAX_ID_LENGTH + 1)), b"{}", "event_id"),
    (agent_headers(), b"this is not json", "body"),
    (agent_headers(), b"[1, 2, 3]", "body"),
    (agent_headers(), b"", "body"),
])
def test_malformed_events_are_refused_with_their_reason(headers, body, reason):
    with pytest.raises(BadEvent) as caught:
        events.parse(headers, body)
    assert caught.value.reason == reason


def test_a_binary_event_without_ce_id_is_not_a_cloudevent_and_the_longest_id_is_accepted():
    headers = {k: v for k, v in agent_headers().items() if k != "Ce-Id"}
    with pytest.raises(BadEvent) as caught:
        events.parse(headers, b"{}")
    assert caught.value.reason == "not_a_cloudevent"
    longest = "x" * events.MAX_ID_LENGTH
    assert events.parse(agent_headers(event_id=longest), b"{}").id == longest


@pytest.mark.parametrize("attributes, reason", [
    ({"id": None}, "not_a_cloudevent"),
    ({"id": ""}, "event_id"),
    ({"id": 12345}, "event_id"),  # the spec's id is a string; a number must be a 400, not a crash
    ({"type": ["org.kubeflow.serving.inference.request"]}, "event_type"),
    ({"type": {"name": "request"}}, "event_type"),
])
def test_structured_envelopes_with_wrongly_typed_attributes_are_refused(attributes, reason):
    data = {"outputs": []}
    envelope = {"specversion": "1.0", "id": "s-1", "type": RESPONSE_TYPE, "source": "/agent", "data": data,
                **attributes}
    envelope = {k: v for k, v in envelope.items() if v is not None}
    with pytest.raises(BadEvent) as caught:
        events.parse({"content-type": "application/cloudevents+json"}, json.dumps(envelope).encode())
    assert caught.value.reason == reason


def tensor_body(**fields):
    return {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4], **fields}]}


@pytest.mark.parametrize("body, name, reason", [
    (tensor_body(), "features", "tensor_missing"),
    ({"inputs": []}, "x", "body"),
    ({"outputs": tensor_body()["inputs"]}, "x", "body"),  # a request body needs inputs
    ({"inputs": tensor_body()["inputs"] * 2}, None, "body"),  # two inputs, none configured
    ({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64"}]}, "x", "body"),  # no data
    (tensor_body(datatype="BYTES", data=["a", "b", "c", "d"]), "x", "datatype"),
    (tensor_body(shape=[2, 3]), "x", "shape"),
    (tensor_body(shape=[4, 1, 2]), "x", "shape"),
    (tensor_body(shape="2x2"), "x", "shape"),
    (tensor_body(shape=[2, -2]), "x", "shape"),
    (tensor_body(data=[[1, 2], [3]]), "x", "data"),  # ragged
    (tensor_body(data=[1, 2, "three", 4]), "x", "data"),
    (tensor_body(data=[1, 2, {"v": 3}, 4]), "x", "data"),
    (tensor_body(data=[1, 2, 3, float("inf")]), "x", "data"),  # JSON's Infinity / 1e400: no log line holds it
    ({"instances": []}, None, "body"),
    ({"instances": [[1, 2], [3]]}, None, "data"),
])
def test_unusable_tensors_are_refused_with_their_reason(body, name, reason):
    with pytest.raises(BadEvent) as caught:
        events.tensor(body, "request", name)
    assert caught.value.reason == reason


def test_infinity_on_the_wire_is_refused_before_it_reaches_the_log():
    event = events.parse(agent_headers(), b'{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", '
                                          b'"data": [Infinity, 1e400]}]}')
    with pytest.raises(BadEvent) as caught:
        events.tensor(event.body, "request", "x")
    assert caught.value.reason == "data"


def _kserve_binary_request(rows: np.ndarray) -> bytes:
    """A V2 REST request with binary tensors, byte for byte what KServe's client sends a predictor (and so
    what the agent's logger in front of that predictor forwards)."""
    from kserve import InferInput, InferRequest

    tensor = InferInput(name="features", shape=list(rows.shape), datatype="FP64")
    tensor.set_data_from_numpy(rows, binary_data=True)
    body, json_length = InferRequest(model_name="heart-disease", infer_inputs=[tensor],
                                     parameters={"binary_data_output": True}).to_rest()
    assert isinstance(body, bytes) and json_length < len(body)  # really the binary extension
    return body


def test_a_binary_tensor_request_reads_as_the_rows_sent():
    rows = np.array([[63.0, 1.0, np.nan], [41.0, 0.0, 2.5]])
    event = events.parse(agent_headers(**{"Content-Type": "application/octet-stream"}), _kserve_binary_request(rows))
    got = events.tensor(event.body, event.kind, "features")
    np.testing.assert_array_equal(got, rows)  # NaN (missing) included


def test_a_binary_tensor_response_reads_as_the_outputs_sent():
    from kserve import InferOutput, InferResponse

    probabilities = np.array([[0.25, 0.75], [0.9, 0.1]], dtype=np.float32)
    output = InferOutput(name="probabilities", shape=[2, 2], datatype="FP32")
    output.set_data_from_numpy(probabilities, binary_data=True)
    body, _ = InferResponse(response_id="r1", model_name="heart-disease", infer_outputs=[output],
                            use_binary_outputs=True).to_rest()
    event = events.parse(agent_headers(ce_type=RESPONSE_TYPE), body)
    np.testing.assert_array_equal(events.tensor(event.body, event.kind, "probabilities"), probabilities)


@pytest.mark.parametrize("cut", [-3, 5])
def test_a_binary_body_whose_bytes_do_not_match_its_header_is_refused(cut):
    body = _kserve_binary_request(np.ones((2, 3)))
    body = body[:cut] if cut < 0 else body + b"\x00" * cut
    with pytest.raises(BadEvent) as caught:
        events.parse(agent_headers(), body)
    assert caught.value.reason == "body"
    assert ("do not fit" if cut < 0 else "belong to no binary tensor") in str(caught.value)
