"""Every change clinops makes to KServe's internals, in one place, for the tested KServe range only.

KServe has no public hook for these, so each replaces a name inside KServe; a KServe release may rename
or move any of them. :func:`apply` therefore refuses a KServe outside :data:`TESTED`, checks that every
target is still there (and still used) before it changes anything, and names the one that is not.
tests/unit/inference/test_kserve_patches.py checks that each patch takes effect.

- ``timing``: ``kserve.protocol.rest.server.TimingMiddleware`` becomes :class:`WithoutTiming` when
  request logging is off. It only feeds the ``kserve.trace`` logger, yet costs a route match and two
  ``getrusage`` calls per request (a sixth of the predictor's CPU time under load, by py-spy).
- ``infer_routes_first``: ``RESTServer._register_endpoints`` then moves the V2 infer routes to the
  front (:func:`infer_routes_first`).
- ``rest_decode``: ``InferRequest.from_bytes`` becomes :func:`inference.rest_decode.from_bytes` (binary
  tensors stay bytes: no Python object per element on the event loop).
- ``grpc_max_receive``: ``kserve.model_server.args.grpc_max_receive_message_length`` is raised to the
  REST body limit (KServe's 8 MiB default is under one full pneumonia batch); ModelServer hands its
  module-level parsed flags to the gRPC server when it starts.
- ``grpc_decode``: ``InferenceServicer.validate_grpc_request`` becomes
  :func:`inference.grpc_decode.validate_grpc_request` (each input's datatype, shape and contents checked
  before KServe's own checks and decoder: a 400 naming the input, counted by reason).
- ``grpc_request_gate``: ``InferenceServicer.ModelInfer`` is counted in the process's bound on inference
  requests in flight and refuses a call past it with ``UNAVAILABLE`` before decoding
  (:func:`inference.early_shed.grpc_guard`; REST's side is :class:`inference.early_shed.ShedEarlyProtocol`).
- ``model_metadata``: ``DataPlane.model_metadata`` reports the model's ``versions`` (the bundle's model
  version; KServe answers ``null``, which the Open Inference Protocol's REST schema does not allow) and
  ``platform`` (KServe answers ""), and ``InferenceServicer.ModelMetadata`` passes the versions on.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re

log = logging.getLogger(__name__)

TESTED = (0, 21)  # KServe 0.21.x
INFER_PATHS = ("/v2/models/{model_name}/infer", "/v2/models/{model_name}/versions/{model_version}/infer")
_MARK = "_clinops_patch"


class WithoutTiming:
    """Takes the place of KServe's per-request ``TimingMiddleware``: passes every request straight on."""

    def __init__(self, app, **_options):
        self.app = app

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


def installed_version() -> str:
    return importlib.metadata.version("kserve")


def check_version(version: str) -> None:
    found = re.match(r"(\d+)\.(\d+)", version)
    if found is None or (int(found[1]), int(found[2])) != TESTED:
        raise RuntimeError(f"KServe {version} is installed; clinops patches KServe internals tested with "
                           f"{TESTED[0]}.{TESTED[1]}.x only (inference/kserve_patches.py): pin kserve to that "
                           f"range or check each patch against the new release")


def _targets() -> dict[str, tuple[object, str]]:
    """Each patch's target: the object holding it and the attribute, by the name the error reports."""
    from kserve import model_server
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.grpc.servicer import InferenceServicer
    from kserve.protocol.infer_type import InferRequest
    from kserve.protocol.rest import server as rest_server

    return {"kserve.protocol.rest.server.TimingMiddleware": (rest_server, "TimingMiddleware"),
            "kserve.protocol.rest.server.RESTServer._add_middlewares": (rest_server.RESTServer, "_add_middlewares"),
            "kserve.protocol.rest.server.RESTServer._register_endpoints": (rest_server.RESTServer,
                                                                         "_register_endpoints"),
            "kserve.protocol.infer_type.InferRequest.from_bytes": (InferRequest, "from_bytes"),
            "kserve.model_server.args.grpc_max_receive_message_length": (getattr(model_server, "args", None),
                                                                         "grpc_max_receive_message_length"),
            "kserve.protocol.grpc.servicer.InferenceServicer.validate_grpc_request": (InferenceServicer,
                                                                                      "validate_grpc_request"),
            "kserve.protocol.dataplane.DataPlane.model_metadata": (DataPlane, "model_metadata"),
            "kserve.protocol.grpc.servicer.InferenceServicer.ModelMetadata": (InferenceServicer,
                                                                                  "ModelMetadata"),
            "kserve.protocol.grpc.servicer.InferenceServicer.ModelInfer": (InferenceServicer, "ModelInfer")}


def check_targets() -> None:
    """Every target is there; the timing swap's also still read by name when the app is built."""
    for name, (owner, attribute) in _targets().items():
        # a class's own: a servicer method KServe stopped overriding would still be found on the generated base
        if owner is None or not (attribute in vars(owner) if isinstance(owner, type) else hasattr(owner, attribute)):
            raise RuntimeError(f"KServe has no {name} (renamed or moved?): the clinops patch of it cannot be "
                               f"applied (inference/kserve_patches.py)")
    from kserve.protocol.rest import server as rest_server

    if "TimingMiddleware" not in rest_server.RESTServer._add_middlewares.__code__.co_names:
        raise RuntimeError("KServe's RESTServer._add_middlewares no longer installs "
                           "kserve.protocol.rest.server.TimingMiddleware: the clinops patch of it would do nothing "
                           "(inference/kserve_patches.py)")


def apply(log_requests: bool = False, grpc_max_receive_bytes: int = 0, models: frozenset[str] = frozenset()) -> list[str]:
    """Check the KServe version and every target, then apply what is not applied yet; returns those names.
    ``models``: the served names (the only model labels a gRPC rejection may carry)."""
    version = installed_version()
    check_version(version)
    check_targets()
    applied = []
    if _grpc_decode(models):
        applied.append("grpc_decode")
    if _model_metadata():
        applied.append("model_metadata")
    if _grpc_request_gate():
        applied.append("grpc_request_gate")
    if not log_requests and _timing():
        applied.append("timing")
    if _infer_routes_first():
        applied.append("infer_routes_first")
    if _rest_decode():
        applied.append("rest_decode")
    if _grpc_max_receive(grpc_max_receive_bytes):
        applied.append("grpc_max_receive")
    log.info("KServe %s internals patched: %s", version, ", ".join(applied) or "nothing new")
    return applied


def _timing() -> bool:
    from kserve.protocol.rest import server as rest_server

    if rest_server.TimingMiddleware is WithoutTiming:
        return False
    rest_server.TimingMiddleware = WithoutTiming  # RESTServer installs it when the server starts
    return True


def _infer_routes_first() -> bool:
    from kserve.protocol.rest.server import RESTServer

    register = RESTServer._register_endpoints
    if getattr(register, _MARK, False):
        return False

    def register_then_reorder(self, app):
        register(self, app)
        infer_routes_first(app)

    setattr(register_then_reorder, _MARK, True)
    RESTServer._register_endpoints = register_then_reorder
    return True


def _rest_decode() -> bool:
    from kserve.protocol.infer_type import InferRequest

    from inference import rest_decode

    if getattr(InferRequest.from_bytes, "__func__", None) is rest_decode.from_bytes:
        return False
    InferRequest.from_bytes = classmethod(rest_decode.from_bytes)
    return True


def _grpc_max_receive(limit: int) -> bool:
    from kserve import model_server

    if model_server.args.grpc_max_receive_message_length >= limit:
        return False
    model_server.args.grpc_max_receive_message_length = limit
    return True


def _grpc_decode(models: frozenset[str]) -> bool:
    from kserve.protocol.grpc.servicer import InferenceServicer

    from inference import grpc_decode

    grpc_decode.served = grpc_decode.served | frozenset(models)
    if getattr(InferenceServicer.validate_grpc_request, "__func__", None) is grpc_decode.validate_grpc_request:
        return False
    InferenceServicer.validate_grpc_request = classmethod(grpc_decode.validate_grpc_request)
    return True


def _grpc_request_gate() -> bool:
    from kserve.protocol.grpc.servicer import InferenceServicer

    from inference import early_shed

    if getattr(InferenceServicer.ModelInfer, _MARK, False):
        return False
    guarded = early_shed.grpc_guard(InferenceServicer.ModelInfer)
    setattr(guarded, _MARK, True)
    InferenceServicer.ModelInfer = guarded
    return True


def _model_metadata() -> bool:
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.servicer import InferenceServicer

    kserve_metadata = DataPlane.model_metadata
    if getattr(kserve_metadata, _MARK, False):
        return False

    async def model_metadata(self, model_name: str) -> dict:
        metadata = await kserve_metadata(self, model_name)
        model = self.get_model_from_registry(model_name)
        version = getattr(model, "model_version", None)
        metadata["versions"] = [str(version)] if version else []
        metadata["platform"] = getattr(model, "platform", "") or ""
        return metadata

    async def grpc_model_metadata(self, request, context):
        metadata = await self._data_plane.model_metadata(model_name=request.name)
        return pb.ModelMetadataResponse(name=metadata["name"], versions=metadata["versions"],
                                        platform=metadata["platform"], inputs=metadata["inputs"],
                                        outputs=metadata["outputs"])

    setattr(model_metadata, _MARK, True)
    DataPlane.model_metadata = model_metadata
    InferenceServicer.ModelMetadata = grpc_model_metadata
    return True


def infer_routes_first(app) -> bool:
    """Move the V2 infer routes to the front of the app's route list (and the router that holds them
    to the front of the app's): FastAPI tries routes in order, and with KServe's order every
    inference request was first matched against fifteen other paths, twice — a tenth of a small
    model's CPU time. No two of these paths match the same URL, so the order changes nothing else.
    Returns whether the routes were found (else the order stays as it was)."""
    def holds_infer(router) -> bool:
        return any(getattr(r, "path", None) in INFER_PATHS for r in getattr(router, "routes", ()))

    def infer_first(routes: list) -> None:
        routes.sort(key=lambda r: getattr(r, "path", None) not in INFER_PATHS)  # stable: the rest keep their order

    top = app.router.routes
    for i, entry in enumerate(top):
        inner = getattr(entry, "original_router", None)  # FastAPI's include_router wrapper
        if inner is not None and holds_infer(inner):
            infer_first(inner.routes)
            top.insert(0, top.pop(i))
            return True
    if holds_infer(app.router):
        infer_first(top)
        return True
    return False
