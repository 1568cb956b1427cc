"""Each patch of KServe's internals takes effect; apply refuses an untested KServe or a missing target,
naming it, before it changes anything; applying twice changes nothing more."""

import logging

import fastapi
import numpy as np
import orjson
import pytest
from kserve import model_server
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import InferRequest
from kserve.protocol.rest import server as rest_server

from inference import kserve_patches
from inference.kserve_patches import INFER_PATHS, WithoutTiming, infer_routes_first

pytestmark = pytest.mark.unit
KSERVE_TIMING = rest_server.TimingMiddleware


@pytest.fixture
def kserve_state(monkeypatch):
    """Every target as it is now, put back after the test."""
    monkeypatch.setattr(rest_server, "TimingMiddleware", rest_server.TimingMiddleware)
    monkeypatch.setattr(rest_server.RESTServer, "_register_endpoints", rest_server.RESTServer._register_endpoints)
    monkeypatch.setattr(InferRequest, "from_bytes", vars(InferRequest)["from_bytes"])
    monkeypatch.setattr(model_server.args, "grpc_max_receive_message_length", 8 * 1024 * 1024)
    monkeypatch.setattr(InferenceServicer, "validate_grpc_request", vars(InferenceServicer)["validate_grpc_request"])
    monkeypatch.setattr(InferenceServicer, "ModelMetadata", InferenceServicer.ModelMetadata)
    monkeypatch.setattr(InferenceServicer, "ModelInfer", InferenceServicer.ModelInfer)
    monkeypatch.setattr(DataPlane, "model_metadata", DataPlane.model_metadata)


def rest_server_of_kserve() -> rest_server.RESTServer:
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension

    repository = ModelRepository()
    return rest_server.RESTServer("kserve.model_server:app", DataPlane(model_registry=repository),
                                  ModelRepositoryExtension(repository), 0)


def kserve_app() -> fastapi.FastAPI:
    """A FastAPI app with KServe's own REST endpoints registered, as its model server does."""
    rest = rest_server_of_kserve()
    app = fastapi.FastAPI()
    rest._register_endpoints(app)
    rest._add_exception_handlers(app)
    return app


def paths(app) -> list[str]:
    found = []
    for entry in app.router.routes:
        inner = getattr(entry, "original_router", None)
        found.extend(r.path for r in inner.routes) if inner is not None else found.append(entry.path)
    return found


def test_without_request_logging_the_app_gets_no_timing_middleware(kserve_state):
    assert "timing" in kserve_patches.apply(log_requests=False)
    assert rest_server.TimingMiddleware is WithoutTiming
    app = fastapi.FastAPI()
    rest_server_of_kserve()._add_middlewares(app)  # what RESTServer does when it starts
    assert [m.cls for m in app.user_middleware] == [WithoutTiming]


def test_with_request_logging_kserves_timing_middleware_stays(kserve_state):
    assert "timing" not in kserve_patches.apply(log_requests=True)
    assert rest_server.TimingMiddleware is KSERVE_TIMING


def test_an_app_built_by_kserves_rest_server_has_the_infer_routes_first(kserve_state):
    from fastapi.testclient import TestClient

    before = paths(kserve_app())
    assert before.index(INFER_PATHS[0]) > 10  # KServe's order: v1 and the other v2 routes first
    assert "infer_routes_first" in kserve_patches.apply()
    app = kserve_app()
    after = paths(app)
    assert after[:2] == list(INFER_PATHS)
    assert sorted(after) == sorted(before)
    client = TestClient(app)
    assert client.get("/v2/health/live").json() == {"live": True}
    missing = client.post("/v2/models/nobody/infer", json={"inputs": []})
    assert missing.status_code == 404 and "nobody" in missing.text
    assert client.get("/v2/models/nobody/ready").status_code == 404


def test_infer_routes_first_leaves_an_app_without_them_alone():
    app = fastapi.FastAPI()

    @app.get("/ping")
    def ping():
        return "pong"

    before = paths(app)
    assert not infer_routes_first(app)
    assert paths(app) == before


def test_binary_fp32_tensors_are_decoded_as_raw_bytes(kserve_state):
    header = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2],
                                       "parameters": {"binary_data_size": 8}}]})
    body = header + np.float32([1.5, -2]).tobytes()
    assert InferRequest.from_bytes(body, len(header), "m").inputs[0].data == [1.5, -2.0]  # KServe's: a list
    assert "rest_decode" in kserve_patches.apply()
    request = InferRequest.from_bytes(body, len(header), "m")
    assert request.inputs[0]._raw_data == np.float32([1.5, -2]).tobytes()
    assert request.inputs[0].data is None
    assert request.inputs[0].as_numpy().tolist() == [1.5, -2.0]


def test_the_grpc_receive_limit_is_raised_to_the_rest_body_limit(kserve_state):
    assert "grpc_max_receive" in kserve_patches.apply(grpc_max_receive_bytes=64 * 1024 * 1024)
    assert vars(model_server.args)["grpc_max_receive_message_length"] == 64 * 1024 * 1024  # what GRPCServer gets
    assert "grpc_max_receive" not in kserve_patches.apply(grpc_max_receive_bytes=1024)  # never lowered
    assert model_server.args.grpc_max_receive_message_length == 64 * 1024 * 1024


def test_applying_twice_changes_nothing_more(kserve_state, caplog):
    with caplog.at_level(logging.INFO, logger=kserve_patches.__name__):
        first = kserve_patches.apply(grpc_max_receive_bytes=32 * 1024 * 1024)
    assert first == ["grpc_decode", "model_metadata", "grpc_request_gate", "timing", "infer_routes_first",
                     "rest_decode", "grpc_max_receive"]
    (line,) = [r.getMessage() for r in caplog.records if r.name == kserve_patches.__name__]
    assert line.endswith(" internals patched: grpc_decode, model_metadata, grpc_request_gate, timing, "
                         "infer_routes_first, rest_decode, grpc_max_receive")
    register, decode = rest_server.RESTServer._register_endpoints, vars(InferRequest)["from_bytes"]
    assert kserve_patches.apply(grpc_max_receive_bytes=32 * 1024 * 1024) == []
    assert rest_server.RESTServer._register_endpoints is register and vars(InferRequest)["from_bytes"] is decode
    assert paths(kserve_app())[:2] == list(INFER_PATHS)


@pytest.mark.parametrize("version", ["0.20.3", "0.22.0", "1.21.0", "unknown"])
def test_a_kserve_outside_the_tested_range_is_refused(kserve_state, monkeypatch, version):
    monkeypatch.setattr(kserve_patches, "installed_version", lambda: version)
    with pytest.raises(RuntimeError, match=rf"KServe {version} is installed; .* tested with 0\.21\.x only"):
        kserve_patches.apply()
    assert rest_server.TimingMiddleware is KSERVE_TIMING  # nothing applied


def test_every_0_21_release_is_accepted():
    for version in ("0.21.0", "0.21.7", "0.21.1rc1"):
        kserve_patches.check_version(version)


@pytest.mark.parametrize(("owner", "attribute", "name"), [
    (lambda: rest_server, "TimingMiddleware", "kserve.protocol.rest.server.TimingMiddleware"),
    (lambda: rest_server.RESTServer, "_add_middlewares", "kserve.protocol.rest.server.RESTServer._add_middlewares"),
    (lambda: rest_server.RESTServer, "_register_endpoints",
     "kserve.protocol.rest.server.RESTServer._register_endpoints"),
    (lambda: InferRequest, "from_bytes", "kserve.protocol.infer_type.InferRequest.from_bytes"),
    (lambda: model_server.args, "grpc_max_receive_message_length",
     "kserve.model_server.args.grpc_max_receive_message_length"),
    (lambda: InferenceServicer, "ModelInfer", "kserve.protocol.grpc.servicer.InferenceServicer.ModelInfer"),
])
def test_a_missing_target_is_refused_by_name(kserve_state, monkeypatch, owner, attribute, name):
    monkeypatch.delattr(owner(), attribute)
    with pytest.raises(RuntimeError, match=rf"KServe has no {name.replace('.', '[.]')} \(renamed or moved\?\)"):
        kserve_patches.apply()
    assert getattr(rest_server, "TimingMiddleware", KSERVE_TIMING) is KSERVE_TIMING  # nothing applied


def test_a_timing_middleware_no_longer_installed_by_name_is_refused(kserve_state, monkeypatch):
    monkeypatch.setattr(rest_server.RESTServer, "_add_middlewares", lambda self, app: None)
    with pytest.raises(RuntimeError, match="no longer installs kserve.protocol.rest.server.TimingMiddleware"):
        kserve_patches.apply()
