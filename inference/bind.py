"""The address the REST and gRPC servers listen on (``--bind_host``).

KServe listens on every interface (REST ``0.0.0.0``, gRPC ``[::]``) with no setting for it; that stays the
default, as a container's port is reached through its pod. ``clinops serve`` and the tests pass the loopback
address, so that a developer's stack is not open to the network. :func:`apply` sets the host on the
uvicorn config KServe builds and on the address KServe's gRPC server adds its port with.
"""

from __future__ import annotations

import functools

ALL_INTERFACES = "0.0.0.0"


def grpc_address(host: str, port: int | str) -> str:
    """``host:port`` for gRPC, IPv6 hosts in brackets; every interface is KServe's ``[::]``."""
    if host in (ALL_INTERFACES, "::", ""):
        return f"[::]:{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def apply(host: str) -> None:
    """Listen on ``host`` (REST and gRPC) instead of every interface; no-op for every interface."""
    if host in (ALL_INTERFACES, "::", ""):
        return
    from kserve.protocol.grpc import server as grpc_server
    from kserve.protocol.rest import server as rest_server

    rest_init = rest_server.RESTServer.__init__

    @functools.wraps(rest_init)
    def rest_on_host(self, *args, **kwargs):
        rest_init(self, *args, **kwargs)
        self.config.host = host

    rest_server.RESTServer.__init__ = rest_on_host

    aio = grpc_server.aio

    class _Aio:  # KServe's gRPC module calls aio.server() and nothing else of it
        def __getattr__(self, name):
            return getattr(aio, name)

        @staticmethod
        def server(*args, **kwargs):
            server = aio.server(*args, **kwargs)
            add_port = server.add_insecure_port
            server.add_insecure_port = lambda address: add_port(grpc_address(host, address.rsplit(":", 1)[1]))
            return server

    grpc_server.aio = _Aio()
