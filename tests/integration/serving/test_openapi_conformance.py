"""Every transformer and predictor against the Open Inference Protocol's REST schema
(tests/support/open_inference_rest.yaml), with requests that schemathesis generates from it: no answer is
a server error, and every answer conforms to the schema (a 200 inference or metadata body included).
Each runtime's copy of the schema names its model (and one that is not served), its bundle's version and
another, and carries valid requests as examples, so that generated and valid requests both reach it."""

import base64
import copy
from pathlib import Path

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from images import encode, random_image
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SPEC = yaml.safe_load((Path(__file__).parents[2] / "support" / "open_inference_rest.yaml").read_text())
VERSION = "1"  # the sample bundles' model version
CODES = [63, 1, 4, 145, 233, 1, 2, 150, 0, 2.3, 3, 0, 6]
PNG = base64.b64encode(encode(random_image(20, 20))).decode()
EXAMPLES = {
    ("heart-disease", "transformer"): [
        {"inputs": [{"name": "features", "shape": [1, 13], "datatype": "FP64", "data": CODES}]},
        {"id": "r1", "inputs": [{"name": "features", "shape": [2, 13], "datatype": "FP64", "data": [CODES, CODES]}],
         "outputs": [{"name": "probability"}]}],
    ("heart-disease", "predictor"): [
        {"inputs": [{"name": "features", "shape": [1, 13], "datatype": "FP64", "data": CODES}]}],
    ("pneumonia", "transformer"): [
        {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [PNG]}]}],
    ("pneumonia", "predictor"): [
        {"inputs": [{"name": "input", "shape": [1, 1, 32, 28], "datatype": "UINT8", "data": [0] * (32 * 28)}]}],
}
RUNS = sorted(EXAMPLES)
MAX_EXAMPLES = 40  # per operation and generation mode: a few seconds per runtime


def runtime_spec(model: str, runtime: str) -> dict:
    spec = copy.deepcopy(SPEC)
    parameters = spec["components"]["parameters"]
    parameters["model_name"]["schema"] = {"type": "string", "enum": [model, "no-such-model"]}
    parameters["model_version"]["schema"] = {"type": "string", "enum": [VERSION, "2"]}
    content = spec["components"]["requestBodies"]["inference"]["content"]["application/json"]
    content["examples"] = {f"valid{i}": {"value": body} for i, body in enumerate(EXAMPLES[(model, runtime)])}
    return spec


def base_url(stack, model: str, runtime: str) -> str:
    endpoint = stack.endpoints[model]
    return endpoint.rest_url if runtime == "transformer" else endpoint.predictor_rest_url


def exercise(strategy, url: str, statuses: dict, max_examples: int) -> None:
    """Send ``max_examples`` cases drawn from ``strategy``; each answer is checked as it comes."""

    @given(case=strategy)
    @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    def run(case):
        response = case.call(base_url=url, timeout=30)
        key = (case.operation.label, response.status_code)
        statuses[key] = statuses.get(key, 0) + 1
        assert response.status_code < 500, f"{case.operation.label}: {response.status_code} {response.text[:300]}"
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    run()


@pytest.mark.parametrize(("model", "runtime"), RUNS, ids=[f"{m}-{r}" for m, r in RUNS])
def test_every_answer_conforms_and_none_is_a_server_error(stack, model, runtime):
    url, statuses = base_url(stack, model, runtime), {}
    loaded = schemathesis.openapi.from_dict(runtime_spec(model, runtime))
    for result in loaded.get_all_operations():
        operation = result.ok()
        exercise(operation.as_strategy(), url, statuses, MAX_EXAMPLES)
        if operation.method.upper() == "POST":  # bodies that break the schema (GETs have nothing to break)
            exercise(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE), url, statuses, MAX_EXAMPLES)
        for strategy in operation.get_strategies_from_examples():
            exercise(strategy, url, statuses, 1)
    infer_ok = sum(n for (label, status), n in statuses.items() if label.endswith("/infer") and status == 200)
    refused = sum(n for (label, status), n in statuses.items() if label.endswith("/infer") and status == 400)
    assert infer_ok >= len(EXAMPLES[(model, runtime)]), statuses  # valid requests answered, and conformed
    assert refused > MAX_EXAMPLES, statuses  # generated ones reached the checks
    assert statuses[("GET /v2/models/{model_name}/versions/{model_version}", 200)] >= 1, statuses


@pytest.mark.parametrize(("path", "body"), [
    ("/v2/models/{model_name}", b'{"name":"heart-disease","versions":null,"platform":"","inputs":[],"outputs":[]}'),
    ("/v2/models/{model_name}/infer", b'{"model_name":"heart-disease","model_version":null,"id":"","parameters":null,'
                                      b'"outputs":[]}'),
])
def test_the_check_refuses_what_kserve_answered_before(path, body):
    """The conformance check would have failed on KServe's own answers: null versions and model_version."""
    import requests

    loaded = schemathesis.openapi.from_dict(runtime_spec("heart-disease", "predictor"))
    operation = loaded[path]["POST" if path.endswith("/infer") else "GET"]
    case = operation.Case(path_parameters={"model_name": "heart-disease"},
                          **({"body": EXAMPLES[("heart-disease", "predictor")][0]} if path.endswith("/infer") else {}))
    response = requests.Response()
    response.status_code, response._content = 200, body
    response.headers["Content-Type"] = "application/json"
    response.request = requests.Request(operation.method.upper(), f"http://test{case.formatted_path}").prepare()
    with pytest.raises(BaseException) as raised:  # a group of failures: their texts are checked below
        case.validate_response(response, checks=[response_schema_conformance])
    failures = getattr(raised.value, "exceptions", [raised.value])
    assert any(type(f).__name__ == "JsonSchemaError" and "null is not of type" in str(f) for f in failures), failures


PLATFORMS = {"transformer": "clinops_transformer", "predictor": None}
PREDICTOR_PLATFORMS = {"heart-disease": "sklearn", "pneumonia": "pytorch_torchscript"}


@pytest.mark.parametrize(("model", "runtime"), RUNS, ids=[f"{m}-{r}" for m, r in RUNS])
def test_model_metadata_names_the_bundle_version_and_the_platform_over_rest_and_grpc(stack, model, runtime):
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as services
    from support.v2_calls import get

    platform = PLATFORMS[runtime] or PREDICTOR_PLATFORMS[model]
    status, metadata = get(f"{base_url(stack, model, runtime)}/v2/models/{model}")
    assert status == 200
    assert (metadata["name"], metadata["versions"], metadata["platform"]) == (model, [VERSION], platform)
    endpoint = stack.endpoints[model]
    target = endpoint.grpc_target if runtime == "transformer" else endpoint.predictor_grpc_target
    with grpc.insecure_channel(target) as channel:
        answer = services.GRPCInferenceServiceStub(channel).ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=10)
    assert (answer.name, list(answer.versions), answer.platform) == (model, [VERSION], platform)
    assert [t.name for t in answer.inputs] == [t["name"] for t in metadata["inputs"]]
