"""What every clinops runtime shares to run under ``kserve.ModelServer``.

* :func:`build_parser` extends KServe's own argument parser, so ``--http_port``, ``--grpc_port``,
  ``--predictor_host``, ``--predictor_protocol`` … keep their KServe meaning;
* :func:`serve` hardens KServe's FastAPI app (body limit, envelope checks, request-validation
  errors as 400 instead of FastAPI's 422, requests in flight bounded before they are parsed), applies :mod:`inference.kserve_patches` and starts the REST
  and gRPC servers;
* :func:`load_or_exit` ends a runtime whose bundle cannot be served with one line naming the file.
"""

from __future__ import annotations

import argparse
import logging
import warnings

from inference import admission, bind, bundle_source, early_shed, kserve_patches
from inference.envelope import EnvelopeMiddleware
from inference.versioned_paths import VersionedPaths

log = logging.getLogger(__name__)

DEFAULT_MAX_IN_FLIGHT_REQUESTS = 256


def build_parser(description: str) -> argparse.ArgumentParser:
    from kserve import model_server

    return argparse.ArgumentParser(description=description, parents=[model_server.parser],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log_requests", action="store_true", help="Log one access line per request.")
    parser.add_argument("--bind_host", default=bind.ALL_INTERFACES,
                        help="Address the REST and gRPC servers listen on (clinops serve passes 127.0.0.1).")
    parser.add_argument("--grace_period", type=int, default=30,
                        help="Seconds a runtime given SIGTERM/SIGINT keeps finishing the requests in flight (it takes "
                             "no new ones), then exits.")
    parser.add_argument("--max_in_flight_body_bytes", type=int, default=None,
                        help="Bytes of REST inference bodies in flight at once, judged from Content-Length before a "
                             "body is read; past it 503 with Retry-After (default: 4 x max_body_bytes; 0: no bound).")
    parser.add_argument("--max_in_flight_requests", type=int, default=None,
                        help="REST inference requests in the app at once; past it a request is answered 503 with "
                             "Retry-After from its request line, before its body is parsed (0: no bound). Size it "
                             f"as capacity (req/s) x the latency you accept (s). Default: {DEFAULT_MAX_IN_FLIGHT_REQUESTS}.")


def flag_overrides(args: argparse.Namespace, fields) -> dict:
    """Flags given on the command line (not None) that name a settings field."""
    return {name: value for name, value in vars(args).items() if name in fields and value is not None}


async def _validation_error(_request, exc):
    from fastapi.responses import JSONResponse

    problems = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ())[1:]) or 'body'}: {err.get('msg')}" for err in exc.errors()[:5]
    )
    return JSONResponse(status_code=400, content={"error": f"malformed V2 inference request: {problems}"})


def serve(models: list, args: argparse.Namespace, max_body_bytes: int, predictor_config=None) -> None:
    """Start KServe's REST + gRPC servers for ``models`` (blocks until SIGINT/SIGTERM)."""
    import kserve
    from fastapi.exceptions import RequestValidationError
    from kserve import model_server

    from inference.direct_infer import DirectInfer

    # KServe's app answers with ORJSONResponse, which FastAPI flags as deprecated on every response;
    # scikit-learn's warning contexts reset the once-only registry, so the line was printed over and over
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    app = model_server.app
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(admission.Overloaded, admission.retry_after_response)
    direct = DirectInfer()
    app.add_middleware(EnvelopeMiddleware, max_body_bytes=max_body_bytes,
                       models=frozenset(m.name for m in models), direct=direct)
    app.add_middleware(VersionedPaths, versions={m.name: getattr(m, "model_version", None) for m in models})
    body_bound = getattr(args, "max_in_flight_body_bytes", None)
    app.add_middleware(admission.BodyAdmission, max_body_bytes=max_body_bytes, models=frozenset(m.name for m in models),
                       limit_bytes=4 * max_body_bytes if body_bound is None else body_bound)
    requests_bound = getattr(args, "max_in_flight_requests", None)
    gate = early_shed.Gate(DEFAULT_MAX_IN_FLIGHT_REQUESTS if requests_bound is None else requests_bound,
                           models=frozenset(m.name for m in models))
    app.add_middleware(early_shed.RequestGate, gate=gate)
    early_shed.apply(gate)
    server = kserve.ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        enable_grpc=args.enable_grpc,
        enable_latency_logging=False,
        grace_period=getattr(args, "grace_period", 30),
        predictor_config=predictor_config,
    )
    direct.dataplane, direct.app = server.dataplane, app
    log_requests = getattr(args, "log_requests", False)
    if not log_requests:
        # One access line and two timing lines per request cost more than the model on small rows.
        # ModelServer() (re)configures logging, so this has to come after it.
        for name in ("uvicorn.access", "kserve.trace"):
            logging.getLogger(name).setLevel(logging.WARNING)
    # gRPC takes requests as large as REST does
    kserve_patches.apply(log_requests=log_requests, grpc_max_receive_bytes=max_body_bytes,
                         models=frozenset(m.name for m in models))
    bind.apply(getattr(args, "bind_host", bind.ALL_INTERFACES))
    _use_event_loop(getattr(args, "event_loop", "auto"))
    freeze_startup_heap()
    server.start(models)


def freeze_startup_heap() -> int:
    """Move every object alive after start-up (modules, the model, its libraries: hundreds of
    thousands) out of the garbage collector's reach; returns how many.

    They live as long as the process, yet each full collection walked all of them: a pause of about
    100 ms that hit some 2 % of requests under load — the predictor's p99 was 130 ms for a p50 of
    3 ms. Frozen, collections only walk what requests allocate (p99 6 ms).
    """
    import gc

    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def _use_event_loop(choice: str) -> None:
    """Honour KServe's ``--event_loop`` (auto: uvloop when installed) for the single-process server.

    ``ModelServer.start`` runs uvicorn inside ``asyncio.run``, where uvicorn's own loop choice never
    applies, so without this the default asyncio loop serves every request; uvloop's transports and
    callbacks cost less per request.
    """
    import asyncio

    if choice == "asyncio":
        return
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # ModelServer.setup_event_loop asks for the current loop before asyncio.run creates the serving one
    asyncio.set_event_loop(asyncio.new_event_loop())


def configure_logging() -> None:
    """Give the runtimes' own lines (bundle loaded, KServe patches applied) a handler in KServe's format:
    KServe configures only its own loggers, so without this they reached no log at all."""
    from kserve.logging import KSERVE_LOGGER_DATE_FORMAT, KSERVE_LOGGER_FORMAT

    logger = logging.getLogger("inference")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(KSERVE_LOGGER_FORMAT, KSERVE_LOGGER_DATE_FORMAT))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def load_or_exit(model) -> None:
    """``model.load()``; a bundle that fails verification, is malformed or is not there ends the process
    (status 1) with one line naming the bundle and the file, instead of a traceback from deep inside a loader."""
    configure_logging()
    try:
        model.load()
    except bundle_source.UNSERVABLE as err:
        raise SystemExit(f"clinops {model.name}: cannot serve: {err}") from None


def load_and_serve(model, args: argparse.Namespace, max_body_bytes: int) -> None:
    """A predictor runtime's main: load (readiness needs a successful warm-up), then serve it alone."""
    load_or_exit(model)
    logging.getLogger(__name__).info("serving %s on REST %d / gRPC %d", model.name, args.http_port, args.grpc_port)
    serve([model], args, max_body_bytes)
