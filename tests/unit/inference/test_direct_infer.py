"""A checked ``POST /v2/models/<name>/infer`` taken straight to KServe's data plane answers exactly what KServe's
FastAPI endpoint answers (status, body, headers; errors through the same handlers) without reaching the router."""

import numpy as np
import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from kserve import Model
from kserve.errors import InvalidInput
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferOutput, InferRequest
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest import server as rest_server

from inference.direct_infer import DirectInfer
from inference.envelope import EnvelopeMiddleware
from inference.responses import JsonInferResponse

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore:ORJSONResponse is deprecated"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


class Doubler(Model):
    """y = 2x; a negative x is the client's error (InvalidInput), x = 13 a bug (RuntimeError)."""

    def __init__(self, name: str, ready: bool = True):
        super().__init__(name)
        self.ready = ready

    async def predict(self, payload: InferRequest, headers=None, response_headers=None):
        x = payload.inputs[0].as_numpy().astype(np.float32)
        if (x < 0).any():
            raise InvalidInput("x must not be negative")
        if (x == 13).any():
            raise RuntimeError("unlucky")
        out = InferOutput(name="y", shape=list(x.shape), datatype="FP32")
        out.set_data_from_numpy(2 * x, binary_data=payload.use_binary_outputs)
        return JsonInferResponse(response_id=payload.id or "", model_name=self.name, model_version="3",
                                 infer_outputs=[out], use_binary_outputs=payload.use_binary_outputs)


class Spy:
    """Innermost middleware: the paths that reached FastAPI's router."""

    def __init__(self, app, seen: list):
        self.app, self.seen = app, seen

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            self.seen.append(scope["path"])
        return await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def clients():
    repository = ModelRepository()
    repository.update(Doubler("doubler"))
    repository.update(Doubler("waking", ready=False))
    dataplane = DataPlane(model_registry=repository)
    rest = rest_server.RESTServer("kserve.model_server:app", dataplane, ModelRepositoryExtension(repository), 0)
    built = {}
    for name in ("fastapi", "direct"):
        app, seen = FastAPI(), []
        rest._register_endpoints(app)
        rest._add_exception_handlers(app)
        direct = None
        if name == "direct":
            direct = DirectInfer()
            direct.dataplane, direct.app = dataplane, app
        app.add_middleware(Spy, seen=seen)
        app.add_middleware(EnvelopeMiddleware, max_body_bytes=1 << 20, models=frozenset({"doubler"}), direct=direct)
        built[name] = (TestClient(app, raise_server_exceptions=False), seen)
    return built


def infer(x, **extra) -> dict:
    return {"id": "r1", "inputs": [{"name": "x", "shape": [len(x)], "datatype": "FP32", "data": x}], **extra}


BINARY = {"parameters": {"binary_data_output": True}}
CASES = {
    "json": ("/v2/models/doubler/infer", infer([1.5, 2.0])),
    "binary outputs": ("/v2/models/doubler/infer", infer([1.5, 2.0], **BINARY)),
    "invalid input": ("/v2/models/doubler/infer", infer([-1.0])),
    "unknown model": ("/v2/models/nobody/infer", infer([1.0])),
    "not ready": ("/v2/models/waking/infer", infer([1.0])),
    "a bug": ("/v2/models/doubler/infer", infer([13.0])),
}
HEADERS = ("content-type", "content-length", "inference-header-content-length")


@pytest.mark.parametrize("case", list(CASES))
def test_direct_answers_what_kserves_endpoint_answers_without_the_router(clients, case):
    path, body = CASES[case]
    answers = {}
    for name, (client, seen) in clients.items():
        seen.clear()
        response = client.post(path, content=orjson.dumps(body), headers={"content-type": "application/json"})
        answers[name] = (response.status_code, response.content,
                         {h: response.headers.get(h) for h in HEADERS}, list(seen))
    status, content, headers, reached = answers["direct"]
    assert reached == [] and answers["fastapi"][3] == [path]  # the direct one never reached the router
    if headers["content-length"] is None or answers["fastapi"][2]["content-length"] is None:
        # KServe's endpoint sends binary outputs chunked, without a length; ours gives it
        assert case == "binary outputs" and headers["content-length"] == str(len(content))
        headers = dict(headers, **{"content-length": answers["fastapi"][2]["content-length"]})
    assert (status, content, headers) == answers["fastapi"][:3]
    expected = {"json": 200, "binary outputs": 200, "invalid input": 400, "unknown model": 404, "not ready": 503,
                "a bug": 500}[case]
    assert status == expected
    if case == "json":
        assert orjson.loads(content) == {"model_name": "doubler", "model_version": "3", "id": "r1", "outputs": [
            {"name": "y", "shape": [2], "datatype": "FP32", "data": [3.0, 4.0]}]}
        assert headers["content-type"] == "application/json"
    if case == "binary outputs":
        length = int(headers["inference-header-content-length"])
        assert np.frombuffer(content[length:], np.float32).tolist() == [3.0, 4.0]
    if case == "invalid input":
        assert orjson.loads(content) == {"error": "x must not be negative"}


def test_only_the_unversioned_infer_path_of_a_model_is_taken():
    direct = DirectInfer()
    scope = {"path": "/v2/models/m/infer", "root_path": ""}
    assert direct.model_of(scope) is None  # no data plane yet: FastAPI answers
    direct.dataplane = object()
    assert direct.model_of(scope) == "m"
    for path in ("/v2/models/m/infer/", "/v2/models/m/versions/1/infer", "/v1/models/m:predict", "/v2/models/m"):
        assert direct.model_of({"path": path}) is None
    assert direct.model_of({"path": "/v2/models/m/infer", "root_path": "/serving"}) is None
