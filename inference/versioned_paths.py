"""The Open Inference Protocol's versioned paths, ``/v2/models/<name>/versions/<version>[/ready|/infer]``.

KServe 0.21 routes them but answers every one 501 ("Model versioning not supported yet"), a server error
for a request the protocol defines. Each runtime serves one bundle, so one version per model: this ASGI
middleware sends a request for that version on to the unversioned path, and answers any other version
404 naming the version that is served. A model it does not serve goes on unversioned too, so KServe's
own 404 answers it.
"""

from __future__ import annotations

import re

import orjson

PATH = re.compile(r"^/v2/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)(?P<rest>/ready|/infer)?/?$")


class VersionedPaths:
    def __init__(self, app, versions: dict[str, str | None]):
        self.app = app
        self.versions = versions  # model name -> its served version

    async def __call__(self, scope, receive, send):
        found = PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if found is None:
            return await self.app(scope, receive, send)
        name, version = found["name"], found["version"]
        served = self.versions.get(name)
        if name in self.versions and str(served) != version:
            body = orjson.dumps({"error": f"Model {name} has no version {version!r}; it serves version {served!r}"})
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": body})
        path = f"/v2/models/{name}{found['rest'] or ''}"
        return await self.app(dict(scope, path=path, raw_path=path.encode()), receive, send)
