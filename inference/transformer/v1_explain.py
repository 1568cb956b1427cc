"""KServe's V1 ``:explain`` verb on the transformer: ``POST /v1/models/<name>:explain`` with
``{"instances": [...]}`` is answered as the V2 infer request that asks for every output, explanation
included, so that both verbs check the input in one place and refuse bad input with the same 400.

Instances of a tabular workload are objects naming each feature (``{"age": 63, "cp": "asymptomatic",
"chol": null, ...}``) or lists of values in ``feature_order``; of an image workload, image files in
base64, as KServe's V1 convention ``{"b64": "..."}`` (or ``{"<input name>": {"b64": "..."}}``). The answer::

    {"predictions": [{"probability": 0.81, "prediction": 1, "risk_level": "High"}, ...],
     "explanations": [<the explanation document of each instance>, ...]}

where an image's explanation is ``{"heatmap": <PNG, base64>, "hot_region": [x0, y0, x1, y1]}``.
"""

from __future__ import annotations

import json

from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse, RequestedOutput

from inference.envelope import BadRequest
from inference.reasons import Reason


def _column(name: str, values: list) -> InferInput:
    texts = any(isinstance(v, str) for v in values)
    if texts:  # a categorical sent by label: BYTES, numbers as their text (the codes are accepted as text)
        data = [v if isinstance(v, str) or v is None else (str(int(v)) if float(v).is_integer() else str(v))
                for v in values]
        return InferInput(name=name, shape=[len(values)], datatype="BYTES", data=data)
    return InferInput(name=name, shape=[len(values)], datatype="FP64", data=list(values))


def _instances(body) -> list:
    if not isinstance(body, dict) or not isinstance(body.get("instances"), list) or not body["instances"]:
        raise BadRequest(Reason.PROTOCOL, 'the V1 :explain body is {"instances": [...]}, one object per patient')
    return body["instances"]


def image_request(body, input_name: str, outputs: list[str]) -> InferRequest:
    """The V2 request (BYTES ``input_name``, base64 text) of a V1 body of base64 image files."""
    files = []
    for i, instance in enumerate(_instances(body)):
        if isinstance(instance, dict) and isinstance(instance.get(input_name), dict):
            instance = instance[input_name]
        if not isinstance(instance, dict) or not isinstance(instance.get("b64"), str):
            raise BadRequest(Reason.PROTOCOL, f'instance {i}: an image file in base64 is needed: {{"b64": "..."}}')
        files.append(instance["b64"])
    return InferRequest(model_name="", infer_inputs=[InferInput(name=input_name, shape=[len(files)], datatype="BYTES",
                                                                data=files)],
                        request_outputs=[RequestedOutput(name) for name in outputs])


def tabular_request(body, order: list[str], outputs: list[str]) -> InferRequest:
    """The V2 request of a V1 ``{"instances": [...]}`` body; every problem named as a 400."""
    instances = _instances(body)
    columns: dict[str, list] = {name: [] for name in order}
    for i, instance in enumerate(instances):
        if isinstance(instance, list):
            if len(instance) != len(order):
                raise BadRequest(Reason.SHAPE, f"instance {i}: {len(instance)} values; {len(order)} are needed in "
                                               f"the order {', '.join(order)}")
            instance = dict(zip(order, instance, strict=True))
        if not isinstance(instance, dict):
            raise BadRequest(Reason.PROTOCOL, f"instance {i}: an object of features or a list of values is needed")
        unknown = [key for key in instance if key not in columns]
        if unknown:
            raise BadRequest(Reason.UNKNOWN_INPUT, f"instance {i}: unknown feature '{unknown[0]}'; the features are "
                                                   f"{', '.join(order)}")
        missing = [name for name in order if name not in instance]
        if missing:
            raise BadRequest(Reason.MISSING_INPUT, f"instance {i}: missing feature '{missing[0]}' (send null for a "
                                                   f"missing nullable value)")
        for name in order:
            value = instance[name]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, str))):
                raise BadRequest(Reason.DATATYPE, f"instance {i}: '{name}' is {value!r}; a number, a text label "
                                                  f"or null is needed")
            columns[name].append(value)
    return InferRequest(model_name="", infer_inputs=[_column(name, values) for name, values in columns.items()],
                        request_outputs=[RequestedOutput(name) for name in outputs])


def _values(output) -> list:
    data = output.data if output.data is not None else output.as_numpy().tolist()
    return [v.decode() if isinstance(v, bytes) else v for v in data]


def _rows(output) -> list:
    values = _values(output)
    shape = [int(d) for d in output.shape]
    if len(shape) == 2:  # e.g. hot_region [N, 4]
        return [values[i * shape[1]:(i + 1) * shape[1]] for i in range(shape[0])]
    return values


def answer(response: InferResponse, explained: list[str]) -> dict:
    """The V1 answer: per-instance predictions, and explanations (JSON documents parsed)."""
    columns = {output.name: _rows(output) for output in response.outputs}
    rows = len(next(iter(columns.values())))
    predictions = [{name: values[i] for name, values in columns.items() if name not in explained}
                   for i in range(rows)]
    if explained == ["explanation"]:  # one JSON document per row
        explanations = [json.loads(doc) for doc in columns["explanation"]]
    else:
        explanations = [{name: columns[name][i] for name in explained} for i in range(rows)]
    return {"predictions": predictions, "explanations": explanations}
