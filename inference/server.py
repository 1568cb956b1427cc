"""What every clinops runtime shares to run under ``kserve.ModelServer``.

* :func:`build_parser` extends KServe's own argument parser, so ``--http_port``, ``--grpc_port``,
  ``--predictor_host``, ``--predictor_protocol`` … keep their KServe meaning;
* :func:`serve` hardens KServe's FastAPI app (body limit, envelope checks, request-validation
  errors as 400 instead of FastAPI's 422) and starts the REST and gRPC servers.
"""

from __future__ import annotations

import argparse
import logging

from inference.envelope import EnvelopeMiddleware

log = logging.getLogger(__name__)


def build_parser(description: str) -> argparse.ArgumentParser:
    from kserve import model_server

    return argparse.ArgumentParser(description=description, parents=[model_server.parser],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log_requests", action="store_true", help="Log one access line per request.")


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

    if not getattr(args, "log_requests", False):
        # one access-log and one timing line per request cost more than the model on small rows
        for name in ("uvicorn.access", "kserve.trace"):
            logging.getLogger(name).setLevel(logging.WARNING)
    app = model_server.app
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(EnvelopeMiddleware, max_body_bytes=max_body_bytes,
                       models=frozenset(m.name for m in models))
    server = kserve.ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        enable_grpc=args.enable_grpc,
        enable_latency_logging=False,
        predictor_config=predictor_config,
    )
    server.start(models)
