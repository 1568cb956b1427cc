"""The serving process's start-up heap is kept out of the garbage collector's full collections."""

import gc

import pytest

from inference.server import freeze_startup_heap

pytestmark = pytest.mark.unit


def test_freeze_startup_heap_moves_live_objects_to_the_permanent_generation():
    before = gc.get_freeze_count()
    kept = [object() for _ in range(1000)]  # noqa: F841 - alive across the call
    try:
        frozen = freeze_startup_heap()
        assert frozen == gc.get_freeze_count()
        assert frozen >= before + 1000
        # later allocations are still collected normally
        garbage = []
        garbage.append(garbage)  # a cycle only the collector can free
        del garbage
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()


def kserve_app():
    """A FastAPI app with KServe's own REST endpoints registered, as its model server does."""
    import fastapi
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from kserve.protocol.rest.server import RESTServer

    repository = ModelRepository()
    rest = RESTServer("kserve.model_server:app", DataPlane(model_registry=repository),
                      ModelRepositoryExtension(repository), 0)
    app = fastapi.FastAPI()
    rest._register_endpoints(app)
    rest._add_exception_handlers(app)
    return app


def paths(app):
    found = []
    for entry in app.router.routes:
        inner = getattr(entry, "original_router", None)
        found.extend(r.path for r in inner.routes) if inner is not None else found.append(entry.path)
    return found


def test_infer_routes_come_first_and_no_route_is_lost():
    from fastapi.testclient import TestClient

    from inference.server import INFER_PATHS, infer_routes_first

    app = kserve_app()
    before = paths(app)
    assert before.index(INFER_PATHS[0]) > 10  # KServe's order: v1 and the other v2 routes first
    assert infer_routes_first(app)
    after = paths(app)
    assert after[:2] == list(INFER_PATHS)
    assert sorted(after) == sorted(before)
    client = TestClient(app)
    assert client.get("/v2/health/live").json() == {"live": True}
    missing = client.post("/v2/models/nobody/infer", json={"inputs": []})
    assert missing.status_code == 404 and "nobody" in missing.text
    assert client.get("/v2/models/nobody/ready").status_code == 404


def test_infer_routes_first_leaves_an_app_without_them_alone():
    import fastapi

    from inference.server import infer_routes_first

    app = fastapi.FastAPI()

    @app.get("/ping")
    def ping():
        return "pong"

    before = paths(app)
    assert not infer_routes_first(app)
    assert paths(app) == before
